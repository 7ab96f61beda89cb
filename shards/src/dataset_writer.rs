//! `DatasetWriter`: a directory of shards plus its manifest, fed by one or more rolling
//! `ShardWriter`s in parallel. Each finished shard is published (atomic rename) and then added to
//! the manifest (atomic rewrite), so after a crash the manifest names only complete shards.

use crate::error::{Error, Result};
use crate::manifest::{Manifest, ShardEntry, MANIFEST_FILE};
use crate::record::Record;
use crate::verify::verify_shard_file;
use crate::writer::ShardFileWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub const SHARD_EXTENSION: &str = "silt";

#[derive(Debug, Clone)]
pub struct DatasetWriterOptions {
    /// A shard is closed once it reaches this many bytes (default 256 MiB).
    pub target_shard_bytes: u64,
    /// ... or this many records, whichever comes first.
    pub max_records_per_shard: Option<u64>,
    /// Shard files are named `<prefix>-<6-digit sequence>.silt`.
    pub prefix: String,
}

impl Default for DatasetWriterOptions {
    fn default() -> Self {
        DatasetWriterOptions { target_shard_bytes: 256 << 20, max_records_per_shard: None, prefix: "shard".into() }
    }
}

/// What `DatasetWriter::open` found and repaired in an existing directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Unfinished temporary files removed.
    pub removed_temp_files: Vec<String>,
    /// Complete shards published before a crash but missing from the manifest, now added.
    pub adopted_shards: Vec<String>,
    /// Shard files that failed verification, renamed to `<name>.rejected`.
    pub rejected_shards: Vec<String>,
}

struct Shared {
    dir: PathBuf,
    opts: DatasetWriterOptions,
    state: Mutex<State>,
}

struct State {
    manifest: Manifest,
    next_seq: u64,
}

/// Cheap to clone; clones share the manifest.
#[derive(Clone)]
pub struct DatasetWriter {
    shared: Arc<Shared>,
}

impl DatasetWriter {
    /// Opens (creating if needed) a dataset directory for appending. An existing manifest is
    /// kept; leftovers of a crash are cleaned up as described in `Recovery`.
    pub fn open(dir: impl Into<PathBuf>, opts: DatasetWriterOptions) -> Result<(Self, Recovery)> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut manifest = if dir.join(MANIFEST_FILE).exists() { Manifest::load(&dir)? } else { Manifest::default() };
        let mut recovery = Recovery::default();
        let mut max_seq = None;
        for name in list_names(&dir)? {
            let path = dir.join(&name);
            if name.starts_with('.') && name.ends_with(".tmp") {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                recovery.removed_temp_files.push(name);
                continue;
            }
            let Some(seq) = shard_seq(&name, &opts.prefix) else { continue };
            if !manifest.shards.iter().any(|s| s.file == name) {
                match verify_shard_file(&path) {
                    Ok(entry) => {
                        manifest.add_shard(entry);
                        recovery.adopted_shards.push(name.clone());
                    }
                    Err(_) => {
                        let to = dir.join(format!("{name}.rejected"));
                        std::fs::rename(&path, &to).map_err(|e| Error::io(&path, e))?;
                        recovery.rejected_shards.push(name);
                        continue;
                    }
                }
            }
            max_seq = max_seq.max(Some(seq));
        }
        manifest.save(&dir)?;
        let state = State { manifest, next_seq: max_seq.map_or(0, |s| s + 1) };
        let shared = Arc::new(Shared { dir, opts, state: Mutex::new(state) });
        Ok((DatasetWriter { shared }, recovery))
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the manifest half-updated on disk
        // (saves are atomic), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the manifest as last saved.
    pub fn manifest(&self) -> Manifest {
        self.state().manifest.clone()
    }

    /// Changes dataset-level fields (classes, params) and saves the manifest.
    pub fn update_manifest(&self, f: impl FnOnce(&mut Manifest)) -> Result<()> {
        let mut st = self.state();
        f(&mut st.manifest);
        st.manifest.save(&self.shared.dir)
    }

    /// A new rolling writer. Several may write in parallel (one per thread or task).
    pub fn shard_writer(&self) -> ShardWriter {
        ShardWriter { dataset: self.clone(), current: None }
    }

    fn next_path(&self) -> PathBuf {
        let mut st = self.state();
        let seq = st.next_seq;
        st.next_seq += 1;
        self.shared.dir.join(format!("{}-{seq:06}.{SHARD_EXTENSION}", self.shared.opts.prefix))
    }

    /// Adds a finished shard file from elsewhere (another dataset) under this dataset's next
    /// name: hard link (or copy) to a temporary name, fsync, check it against `expected`, rename,
    /// then list it in the manifest.
    pub fn add_existing_shard(&self, src: &Path, expected: &ShardEntry) -> Result<ShardEntry> {
        let path = self.next_path();
        let tmp = crate::writer::temp_path_for(&path);
        let _ = std::fs::remove_file(&tmp);
        if std::fs::hard_link(src, &tmp).is_err() {
            std::fs::copy(src, &tmp).map_err(|e| Error::io(src, e))?;
        }
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
        let mut entry = verify_shard_file(&tmp)?;
        if (entry.records, entry.bytes, entry.crc32c) != (expected.records, expected.bytes, expected.crc32c) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Corrupt { path: src.into(), what: "file does not match its manifest entry".into() });
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        crate::writer::sync_parent_dir(&path)?;
        entry.file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.publish(entry.clone())?;
        Ok(entry)
    }

    fn publish(&self, entry: ShardEntry) -> Result<()> {
        let mut st = self.state();
        st.manifest.add_shard(entry);
        st.manifest.save(&self.shared.dir)
    }
}

/// Appends records to a sequence of shard files, closing each at the size/count target.
pub struct ShardWriter {
    dataset: DatasetWriter,
    current: Option<ShardFileWriter>,
}

impl ShardWriter {
    pub fn append(&mut self, rec: &Record<'_>) -> Result<()> {
        if self.current.is_none() {
            self.current = Some(ShardFileWriter::create(self.dataset.next_path())?);
        }
        let cur = self.current.as_mut().expect("opened above");
        cur.append(rec)?;
        let opts = &self.dataset.shared.opts;
        let full = cur.projected_bytes() >= opts.target_shard_bytes
            || opts.max_records_per_shard.is_some_and(|m| cur.records() >= m);
        if full {
            self.close_shard()?;
        }
        Ok(())
    }

    /// Publishes the shard being written now (if it holds any record) and returns its entry.
    pub fn close_shard(&mut self) -> Result<Option<ShardEntry>> {
        match self.current.take() {
            Some(w) if w.records() > 0 => {
                let entry = w.finish()?;
                self.dataset.publish(entry.clone())?;
                Ok(Some(entry))
            }
            _ => Ok(None),
        }
    }

    /// Publishes the last shard. Dropping a writer without `finish` discards its open shard.
    pub fn finish(mut self) -> Result<()> {
        self.close_shard().map(|_| ())
    }
}

fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `shard-000012.silt` -> Some(12) for prefix "shard".
fn shard_seq(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let digits = rest.strip_suffix(&format!(".{SHARD_EXTENSION}"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_sequence_numbers() {
        assert_eq!(super::shard_seq("shard-000012.silt", "shard"), Some(12));
        assert_eq!(super::shard_seq("shard-.silt", "shard"), None);
        assert_eq!(super::shard_seq("shard-12.silt.rejected", "shard"), None);
        assert_eq!(super::shard_seq("part-000001.silt", "shard"), None);
    }
}
