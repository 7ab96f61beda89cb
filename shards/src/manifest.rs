//! `Manifest`: the versioned JSON list of a dataset's published shards, written atomically.

use crate::error::{Error, Result};
use crate::writer::sync_parent_dir;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: &str = "silt-manifest";
pub const MANIFEST_VERSION: u32 = 1;

/// One published shard as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name relative to the manifest's directory.
    pub file: String,
    pub records: u64,
    /// Size of the whole file.
    pub bytes: u64,
    pub payload_bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// `major.minor` of the shard files.
    pub shard_format: String,
    pub created_by: String,
    /// Dataset-level totals (sums over `shards`).
    pub records: u64,
    pub bytes: u64,
    pub payload_bytes: u64,
    /// Class names by label, when the source has labels (ImageFolder: sorted folder names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// How the dataset was made (source, flags); free-form, kept for provenance.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Sorted by file name; the global record order is this order, then file order.
    pub shards: Vec<ShardEntry>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            shard_format: format!("{}.{}", crate::format::VERSION_MAJOR, crate::format::VERSION_MINOR),
            created_by: concat!("silt-shards ", env!("CARGO_PKG_VERSION")).into(),
            records: 0,
            bytes: 0,
            payload_bytes: 0,
            classes: None,
            params: Default::default(),
            shards: Vec::new(),
        }
    }
}

impl Manifest {
    /// Reads `dir/manifest.json` and checks its version, file names and totals.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join(MANIFEST_FILE);
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let bad = |what: String| Error::Manifest { path: path.clone(), what };
        let m: Manifest = serde_json::from_slice(&text).map_err(|e| bad(format!("not valid manifest JSON: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!("format is {:?}, expected {MANIFEST_FORMAT:?}", m.format)));
        }
        if m.version != MANIFEST_VERSION {
            return Err(bad(format!("manifest version {} is not supported (this build reads {MANIFEST_VERSION})", m.version)));
        }
        let major = m.shard_format.split('.').next().and_then(|s| s.parse::<u16>().ok());
        if major != Some(crate::format::VERSION_MAJOR) {
            return Err(bad(format!("shard format {:?} is not supported", m.shard_format)));
        }
        for s in &m.shards {
            if !is_plain_file_name(&s.file) {
                return Err(bad(format!("shard file name {:?} is not a plain file name", s.file)));
            }
        }
        // Sorted and unique: a name listed twice would duplicate its records.
        if let Some(w) = m.shards.windows(2).find(|w| w[0].file >= w[1].file) {
            return Err(bad(format!("shards are not sorted by file name, or listed twice: {:?}, {:?}", w[0].file, w[1].file)));
        }
        let (records, bytes, payload) = m.sums();
        if (records, bytes, payload) != (m.records, m.bytes, m.payload_bytes) {
            return Err(bad("dataset totals do not match the sum over shards".into()));
        }
        Ok(m)
    }

    fn sums(&self) -> (u64, u64, u64) {
        self.shards.iter().fold((0, 0, 0), |(r, b, p), s| (r + s.records, b + s.bytes, p + s.payload_bytes))
    }

    /// Adds a published shard, keeping the list sorted by file name and the totals current.
    pub fn add_shard(&mut self, entry: ShardEntry) {
        let at = self.shards.partition_point(|s| s.file < entry.file);
        if self.shards.get(at).map(|s| &s.file) == Some(&entry.file) {
            self.shards[at] = entry;
        } else {
            self.shards.insert(at, entry);
        }
        (self.records, self.bytes, self.payload_bytes) = self.sums();
    }

    /// Record counts per shard, in manifest order.
    pub fn record_counts(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.records).collect()
    }

    /// Writes `dir/manifest.json` atomically: temporary file, fsync, rename, fsync directory.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let path = dir.as_ref().join(MANIFEST_FILE);
        let tmp = dir.as_ref().join(format!(".{MANIFEST_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serialises");
        text.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()
        };
        write().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_parent_dir(&path)
    }
}

/// A name that stays inside the dataset directory: no separators, not `.`/`..`, not hidden.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}
