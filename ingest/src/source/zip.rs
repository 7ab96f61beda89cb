//! `zip --zip train.zip [--map train_map.txt]`: PIC's ImageNet-Zip layout. Entries are read
//! straight out of the archive, several at once: every reader shares one file descriptor through
//! positioned reads (`pread`), and the parsed central directory is shared, not re-read.
//!
//! With a map (lines `relative/path<TAB>label`, PIC's `train_map.txt`), the items are the map's
//! lines in order, labelled; without one, every file entry with an image extension in
//! central-directory order, unlabelled.

use super::{has_extension, is_safe_relative, Source};
use crate::error::{Error, Result};
use crate::item::{Fetch, FetchError, Item, Payload};
use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zip::ZipArchive;

pub struct ZipSource {
    path: PathBuf,
    map_path: Option<PathBuf>,
    archive: ZipArchive<SharedFile>,
    /// (key, label) per item, in listing order.
    listing: Arc<Vec<(String, Option<i64>)>>,
    /// Entry name -> index in the archive.
    by_name: Arc<HashMap<String, usize>>,
}

impl ZipSource {
    pub fn open(path: impl Into<PathBuf>, map: Option<PathBuf>, extensions: &[String]) -> Result<Self> {
        let path = path.into();
        let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let archive = ZipArchive::new(SharedFile::new(file)).map_err(|source| Error::Zip { path: path.clone(), source })?;
        let mut by_name = HashMap::with_capacity(archive.len());
        let mut names = Vec::with_capacity(archive.len());
        for (i, name) in archive.file_names_in_order() {
            if !name.ends_with('/') {
                names.push(name.to_string());
            }
            by_name.insert(name.to_string(), i);
        }
        let listing = match &map {
            Some(m) => read_map(m)?,
            None => names.into_iter().filter(|n| has_extension(n, extensions)).map(|n| (n, None)).collect(),
        };
        Ok(ZipSource { path, map_path: map, archive, listing: Arc::new(listing), by_name: Arc::new(by_name) })
    }
}

/// Central-directory order, which `ZipArchive::file_names` (a hash map walk) does not give.
trait InOrder {
    fn file_names_in_order(&self) -> Vec<(usize, &str)>;
}

impl<R: Read + Seek> InOrder for ZipArchive<R> {
    fn file_names_in_order(&self) -> Vec<(usize, &str)> {
        (0..self.len()).filter_map(|i| self.name_for_index(i).map(|n| (i, n))).collect()
    }
}

/// PIC's map: `relative/path.JPEG<TAB>label` per line (a space also separates).
fn read_map(path: &Path) -> Result<Vec<(String, Option<i64>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| Error::BadList { path: path.into(), line: n as u64 + 1, what: what.into() };
        let (key, label) = line.rsplit_once(['\t', ' ']).ok_or_else(|| bad("expected `path<TAB>label`"))?;
        let label: i64 = label.trim().parse().map_err(|_| bad("label is not an integer"))?;
        out.push((key.to_string(), Some(label)));
    }
    Ok(out)
}

impl Source for ZipSource {
    fn kind(&self) -> &'static str {
        "zip"
    }

    fn describe(&self) -> serde_json::Value {
        let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        serde_json::json!({ "kind": "zip", "zip": abs(&self.path), "map": self.map_path.as_deref().map(abs) })
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.listing.len() as u64)
    }

    fn items(&self) -> BoxStream<'static, Result<Item>> {
        let listing = self.listing.clone();
        let by_name = self.by_name.clone();
        let archive = self.archive.clone();
        Box::pin(async_stream::stream! {
            for (index, (key, label)) in listing.iter().enumerate() {
                let payload = if !is_safe_relative(key) {
                    Payload::Rejected(Rejection::new(Reason::UnsafePath, "absolute path or `..` in a zip entry name"))
                } else {
                    match by_name.get(key) {
                        None => Payload::Rejected(Rejection::new(Reason::NotFound, "no such entry in the zip")),
                        Some(&entry) => Payload::Fetch(Box::new(EntryFetch { archive: archive.clone(), entry })),
                    }
                };
                yield Ok(Item { index: index as u64, key: key.clone(), label: *label, payload });
            }
        })
    }
}

struct EntryFetch {
    archive: ZipArchive<SharedFile>,
    entry: usize,
}

impl Fetch for EntryFetch {
    fn fetch(&self, max_bytes: u64) -> BoxFuture<'_, Result<Bytes, FetchError>> {
        let mut archive = self.archive.clone();
        let entry = self.entry;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_entry(&mut archive, entry, max_bytes))
                .await
                .map_err(|e| FetchError::Permanent(format!("zip reader task failed: {e}")))?
        })
    }
}

fn read_entry(archive: &mut ZipArchive<SharedFile>, entry: usize, max_bytes: u64) -> Result<Bytes, FetchError> {
    let bad = |e: &dyn std::fmt::Display| FetchError::Permanent(format!("zip entry {entry}: {e}"));
    let file = archive.by_index(entry).map_err(|e| bad(&e))?;
    if file.is_symlink() {
        return Err(FetchError::Permanent("zip entry is a symbolic link".into()));
    }
    if file.size() > max_bytes {
        return Err(FetchError::TooLarge { bytes: file.size(), limit: max_bytes });
    }
    // The declared size may lie (a deflate bomb): never read past the limit.
    let mut buf = Vec::with_capacity(file.size() as usize);
    file.take(max_bytes + 1).read_to_end(&mut buf).map_err(|e| bad(&e))?;
    if buf.len() as u64 > max_bytes {
        return Err(FetchError::TooLarge { bytes: buf.len() as u64, limit: max_bytes });
    }
    Ok(Bytes::from(buf))
}

/// A `Read + Seek + Clone` view of one open file through positioned reads, so that clones read
/// in parallel without sharing a cursor.
#[derive(Clone)]
pub struct SharedFile {
    file: Arc<File>,
    pos: u64,
}

impl SharedFile {
    pub fn new(file: File) -> Self {
        SharedFile { file: Arc::new(file), pos: 0 }
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.file.metadata()?.len().checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}
