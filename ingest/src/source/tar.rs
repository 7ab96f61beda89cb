//! `tar FILES...`: WebDataset shards as a source, the migration path from WebDataset.
//!
//! Members sharing a key (the path up to the first dot of the file name: `00042.jpg`,
//! `00042.cls`) form one sample; its image member becomes the item and a `cls`/`cls.txt`/
//! `label` member, if it holds an integer, its label. Tars are read sequentially, once, without
//! extracting anything; the item key is `<tar file name>/<member path>`.

use super::{has_extension, is_safe_relative, Source};
use crate::error::{Error, Result};
use crate::item::{FetchError, Item, Payload};
use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use futures::stream::BoxStream;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

pub struct TarSource {
    files: Vec<PathBuf>,
    extensions: Arc<Vec<String>>,
    max_bytes: u64,
}

impl TarSource {
    /// `max_bytes`: larger members are skipped unread (quarantined `too-large`).
    pub fn new(files: Vec<PathBuf>, extensions: Vec<String>, max_bytes: u64) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Usage("tar: give at least one .tar file".into()));
        }
        for f in &files {
            if !f.is_file() {
                return Err(Error::io(f, std::io::Error::new(std::io::ErrorKind::NotFound, "tar file not found")));
            }
        }
        Ok(TarSource { files, extensions: Arc::new(extensions), max_bytes })
    }
}

impl Source for TarSource {
    fn kind(&self) -> &'static str {
        "tar"
    }

    fn describe(&self) -> serde_json::Value {
        let files: Vec<PathBuf> = self.files.iter().map(|f| f.canonicalize().unwrap_or_else(|_| f.clone())).collect();
        serde_json::json!({ "kind": "tar", "files": files, "extensions": *self.extensions })
    }

    fn items(&self) -> BoxStream<'static, Result<Item>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Item>>(64);
        let (files, exts, max_bytes) = (self.files.clone(), self.extensions.clone(), self.max_bytes);
        std::thread::spawn(move || {
            let mut lister = Lister { tx, next_index: 0, exts, max_bytes };
            for f in &files {
                if let Err(e) = lister.read_tar(f) {
                    let _ = lister.tx.blocking_send(Err(e));
                    return;
                }
            }
        });
        Box::pin(async_stream::stream! {
            while let Some(item) = rx.recv().await {
                yield item;
            }
        })
    }
}

/// A sample being assembled: its image member and its label member.
#[derive(Default)]
struct Sample {
    key: String,
    image: Option<(String, Payload)>,
    label: Option<i64>,
}

struct Lister {
    tx: tokio::sync::mpsc::Sender<Result<Item>>,
    next_index: u64,
    exts: Arc<Vec<String>>,
    max_bytes: u64,
}

impl Lister {
    fn read_tar(&mut self, path: &std::path::Path) -> Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
        let entries = archive.entries().map_err(|e| Error::io(path, e))?;
        let mut sample = Sample::default();
        for entry in entries {
            // A damaged tar ends its own listing (one quarantine entry), not the whole run.
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.flush(&mut sample)?;
                    let rej = Rejection::new(Reason::ReadError, format!("tar stops here: {e}"));
                    return self.send(format!("{name}/"), None, Payload::Rejected(rej));
                }
            };
            if !entry.header().entry_type().is_file() {
                continue; // directories, links: not samples
            }
            let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let (dir, file) = member.rsplit_once('/').map_or(("", member.as_str()), |(d, f)| (d, f));
            let Some((stem, ext)) = file.split_once('.') else { continue };
            let sample_key = if dir.is_empty() { stem.to_string() } else { format!("{dir}/{stem}") };
            if sample_key != sample.key {
                self.flush(&mut sample)?;
                sample.key = sample_key;
            }
            let size = entry.header().size().unwrap_or(u64::MAX);
            let key = format!("{name}/{member}");
            if ["cls", "cls.txt", "label", "label.txt"].contains(&ext) {
                let mut text = String::new();
                if size <= 64 && entry.read_to_string(&mut text).is_ok() {
                    sample.label = text.trim().parse().ok();
                }
            } else if has_extension(file, &self.exts) && sample.image.is_none() {
                let payload = if !is_safe_relative(&member) {
                    Payload::Rejected(Rejection::new(Reason::UnsafePath, "absolute path or `..` in a tar member name"))
                } else if size > self.max_bytes {
                    Payload::Rejected(FetchError::TooLarge { bytes: size, limit: self.max_bytes }.into_rejection())
                } else {
                    let mut buf = Vec::with_capacity(size as usize);
                    match entry.read_to_end(&mut buf) {
                        Ok(_) => Payload::Ready(Bytes::from(buf)),
                        Err(e) => Payload::Rejected(Rejection::new(Reason::ReadError, e.to_string())),
                    }
                };
                sample.image = Some((key, payload));
            }
        }
        self.flush(&mut sample)
    }

    /// Sends the finished sample's image (samples without one are metadata only: skipped).
    fn flush(&mut self, sample: &mut Sample) -> Result<()> {
        let s = std::mem::take(sample);
        match s.image {
            Some((key, payload)) => self.send(key, s.label, payload),
            None => Ok(()),
        }
    }

    fn send(&mut self, key: String, label: Option<i64>, payload: Payload) -> Result<()> {
        let item = Item { index: self.next_index, key, label, payload };
        self.next_index += 1;
        self.tx.blocking_send(Ok(item)).map_err(|_| Error::Task("listing receiver closed".into()))
    }
}
