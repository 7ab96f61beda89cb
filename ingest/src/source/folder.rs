//! `folder DIR`: image files under a directory, walked recursively in sorted order. With
//! sub-folders it follows the ImageFolder convention: the first path component is the class,
//! labels number the sorted class names.

use super::{has_extension, Source};
use crate::error::{Error, Result};
use crate::item::{Fetch, FetchError, Item, Payload};
use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct FolderSource {
    root: PathBuf,
    /// `root` with symlinks resolved: where every file must stay.
    canonical_root: PathBuf,
    extensions: Arc<Vec<String>>,
    classes: Option<Vec<String>>,
}

impl FolderSource {
    pub fn new(root: impl Into<PathBuf>, extensions: Vec<String>) -> Result<Self> {
        let root = root.into();
        let canonical_root = root.canonicalize().map_err(|e| Error::io(&root, e))?;
        let mut classes = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))? {
            let entry = entry.map_err(|e| Error::io(&root, e))?;
            // file_type() does not follow links: a linked directory is not a class.
            if entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir() {
                classes.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        classes.sort();
        let classes = (!classes.is_empty()).then_some(classes);
        Ok(FolderSource { root, canonical_root, extensions: Arc::new(extensions), classes })
    }
}

impl Source for FolderSource {
    fn kind(&self) -> &'static str {
        "folder"
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "folder", "root": self.canonical_root, "extensions": *self.extensions })
    }

    fn classes(&self) -> Option<Vec<String>> {
        self.classes.clone()
    }

    fn items(&self) -> BoxStream<'static, Result<Item>> {
        // The walk is blocking file-system work: a dedicated thread feeds a bounded channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Item>>(1024);
        let walk = Walk {
            root: self.root.clone(),
            canonical_root: self.canonical_root.clone(),
            extensions: self.extensions.clone(),
            classes: self.classes.clone().unwrap_or_default(),
            next_index: 0,
            tx,
        };
        std::thread::spawn(move || walk.run());
        Box::pin(async_stream::stream! {
            while let Some(item) = rx.recv().await {
                yield item;
            }
        })
    }
}

struct Walk {
    root: PathBuf,
    canonical_root: PathBuf,
    extensions: Arc<Vec<String>>,
    classes: Vec<String>,
    next_index: u64,
    tx: tokio::sync::mpsc::Sender<Result<Item>>,
}

impl Walk {
    fn run(mut self) {
        let root = self.root.clone();
        if let Err(e) = self.walk_dir(&root, "") {
            let _ = self.tx.blocking_send(Err(e));
        }
    }

    /// Depth-first, entries sorted by name, so the order (and so the ids) never changes.
    /// Returns Ok(()) early when the receiver is gone.
    fn walk_dir(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let mut entries = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            entries.push(e);
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
            if ft.is_dir() {
                self.walk_dir(&path, &key)?;
                continue;
            }
            let is_link = ft.is_symlink();
            if is_link && path.is_dir() {
                // Linked directories are not followed (no cycles); one pointing out is reported.
                if !self.inside_root(&path) {
                    self.send(key, Payload::Rejected(Rejection::new(Reason::SymlinkEscape, "directory link leaves the tree")))?;
                }
                continue;
            }
            if !has_extension(&name, &self.extensions) {
                continue;
            }
            let payload = if is_link && !self.inside_root(&path) {
                Payload::Rejected(Rejection::new(Reason::SymlinkEscape, "link target is outside the source folder"))
            } else {
                Payload::Fetch(Box::new(FileFetch { path }))
            };
            self.send(key, payload)?;
        }
        Ok(())
    }

    fn inside_root(&self, path: &Path) -> bool {
        path.canonicalize().is_ok_and(|p| p.starts_with(&self.canonical_root))
    }

    fn label_of(&self, key: &str) -> Option<i64> {
        let (class, _) = key.split_once('/')?;
        self.classes.binary_search_by(|c| c.as_str().cmp(class)).ok().map(|i| i as i64)
    }

    fn send(&mut self, key: String, payload: Payload) -> Result<()> {
        let item = Item { index: self.next_index, label: self.label_of(&key), key, payload };
        self.next_index += 1;
        // A closed channel means the pipeline stopped (fatal error elsewhere): stop walking.
        self.tx.blocking_send(Ok(item)).map_err(|_| Error::Task("listing receiver closed".into()))
    }
}

struct FileFetch {
    path: PathBuf,
}

impl Fetch for FileFetch {
    fn fetch(&self, max_bytes: u64) -> BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let what = self.path.display().to_string();
            let meta = tokio::fs::metadata(&self.path).await.map_err(|e| FetchError::from_io(&what, e))?;
            if meta.len() > max_bytes {
                return Err(FetchError::TooLarge { bytes: meta.len(), limit: max_bytes });
            }
            tokio::fs::read(&self.path).await.map(Bytes::from).map_err(|e| FetchError::from_io(&what, e))
        })
    }
}
