//! Feature snapshots: the N×D features (f32, or f16 to halve the disk) and record ids that each
//! rank writes every few epochs, memory-mapped for clustering.
//!
//! File layout, little-endian (format 1.0):
//! ```text
//! 0   magic "SILTFEAT"           8 bytes
//! 8   major u16, minor u16       readers accept any minor of their major
//! 12  dtype u16 (0 f32, 1 f16), flags u16 (reserved, 0)
//! 16  n u64, 24 d u64
//! 32  rank u32, 36 world u32
//! 40  crc32c of the feature bytes u32, 44 crc32c of the id bytes u32
//! 48  reserved (zero) 12 bytes
//! 60  crc32c of bytes 0..60 u32
//! 64  features n·d elements, row-major
//! ..  ids n × u64
//! ```
//! The header is written last into a temporary file that is fsynced and renamed into place, so a
//! snapshot either exists complete or not at all (the shard format's publish rule). Opening
//! checks magic, version, header checksum and size; [`OpenMode::Verify`] also checks the data
//! checksums (a full read: seconds per 10 GB).

use super::error::{ClusterError, Result};
use half::f16;
use memmap2::Mmap;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"SILTFEAT";
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;
const HEADER_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureDtype {
    F32,
    F16,
}

impl FeatureDtype {
    fn code(self) -> u16 {
        match self {
            FeatureDtype::F32 => 0,
            FeatureDtype::F16 => 1,
        }
    }
    fn size(self) -> usize {
        match self {
            FeatureDtype::F32 => 4,
            FeatureDtype::F16 => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub dtype: FeatureDtype,
    pub n: u64,
    pub d: u64,
    pub rank: u32,
    pub world: u32,
    data_crc: u32,
    ids_crc: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        h[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        h[12..14].copy_from_slice(&self.dtype.code().to_le_bytes());
        h[16..24].copy_from_slice(&self.n.to_le_bytes());
        h[24..32].copy_from_slice(&self.d.to_le_bytes());
        h[32..36].copy_from_slice(&self.rank.to_le_bytes());
        h[36..40].copy_from_slice(&self.world.to_le_bytes());
        h[40..44].copy_from_slice(&self.data_crc.to_le_bytes());
        h[44..48].copy_from_slice(&self.ids_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn decode(path: &Path, h: &[u8]) -> Result<Header> {
        if h.len() < HEADER_LEN || &h[..8] != MAGIC {
            return Err(ClusterError::corrupt(path, "not a silt feature snapshot (bad magic)"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
        let (major, minor) = (u16_at(8), u16_at(10));
        if major != VERSION_MAJOR {
            return Err(ClusterError::IncompatibleVersion { path: path.into(), found_major: major, found_minor: minor, major: VERSION_MAJOR });
        }
        if crc32c::crc32c(&h[..60]) != u32_at(60) {
            return Err(ClusterError::corrupt(path, "header checksum mismatch"));
        }
        let dtype = match u16_at(12) {
            0 => FeatureDtype::F32,
            1 => FeatureDtype::F16,
            c => return Err(ClusterError::corrupt(path, format!("unknown feature dtype code {c}"))),
        };
        Ok(Header { dtype, n: u64_at(16), d: u64_at(24), rank: u32_at(32), world: u32_at(36), data_crc: u32_at(40), ids_crc: u32_at(44) })
    }

    fn data_len(&self) -> Option<usize> {
        (self.n as usize).checked_mul(self.d as usize)?.checked_mul(self.dtype.size())
    }
}

/// Streams rows into a new snapshot; nothing is visible at `path` until [`finish`](Self::finish).
pub struct SnapshotWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    header: Header,
    ids: Vec<u64>,
    data_crc: u32,
}

impl SnapshotWriter {
    pub fn create(path: &Path, d: usize, dtype: FeatureDtype, rank: u32, world: u32) -> Result<Self> {
        if d == 0 {
            return Err(ClusterError::Invalid("snapshot dimension must be > 0".into()));
        }
        let tmp = super::npy::tmp_path(path);
        let file = File::create(&tmp).map_err(|e| ClusterError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&[0u8; HEADER_LEN]).map_err(|e| ClusterError::io(&tmp, e))?;
        let header = Header { dtype, n: 0, d: d as u64, rank, world, data_crc: 0, ids_crc: 0 };
        Ok(SnapshotWriter { path: path.into(), tmp, out, header, ids: Vec::new(), data_crc: 0 })
    }

    /// Appends rows (`ids.len()` × d values).
    pub fn push(&mut self, ids: &[u64], rows: &[f32]) -> Result<()> {
        let d = self.header.d as usize;
        if rows.len() != ids.len() * d {
            return Err(ClusterError::Invalid(format!("snapshot push: {} ids but {} values (d = {d})", ids.len(), rows.len())));
        }
        let bytes: Vec<u8> = match self.header.dtype {
            FeatureDtype::F32 => rows.iter().flat_map(|v| v.to_le_bytes()).collect(),
            FeatureDtype::F16 => rows.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        };
        self.data_crc = crc32c::crc32c_append(self.data_crc, &bytes);
        self.out.write_all(&bytes).map_err(|e| ClusterError::io(&self.tmp, e))?;
        self.ids.extend_from_slice(ids);
        self.header.n += ids.len() as u64;
        Ok(())
    }

    /// Writes ids and header, fsyncs, renames into place. Returns the final header.
    pub fn finish(mut self) -> Result<Header> {
        let io = |e| ClusterError::io(&self.tmp, e);
        let id_bytes: Vec<u8> = self.ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.header.data_crc = self.data_crc;
        self.header.ids_crc = crc32c::crc32c(&id_bytes);
        self.out.write_all(&id_bytes).map_err(io)?;
        let mut file = self.out.into_inner().map_err(|e| ClusterError::io(&self.tmp, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| ClusterError::io(&self.tmp, e))?;
        file.write_all(&self.header.encode()).map_err(|e| ClusterError::io(&self.tmp, e))?;
        file.sync_all().map_err(|e| ClusterError::io(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| ClusterError::io(&self.path, e))?;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all(); // best effort: makes the rename durable on Linux
            }
        }
        Ok(self.header)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Check header, version and sizes only (instant).
    Trust,
    /// Also recompute the data and id checksums.
    Verify,
}

/// One rank's snapshot, memory-mapped.
#[derive(Debug)]
pub struct Snapshot {
    pub path: PathBuf,
    pub header: Header,
    map: Mmap,
}

impl Snapshot {
    pub fn open(path: &Path, mode: OpenMode) -> Result<Snapshot> {
        let file = File::open(path).map_err(|e| ClusterError::io(path, e))?;
        // SAFETY: snapshots are published by rename and never modified in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ClusterError::io(path, e))?;
        let header = Header::decode(path, &map)?;
        let data_len = header.data_len().ok_or_else(|| ClusterError::corrupt(path, "n × d overflows"))?;
        let expected = HEADER_LEN as u64 + data_len as u64 + header.n * 8;
        if map.len() as u64 != expected {
            return Err(ClusterError::corrupt(path, format!("size {} bytes, header says {expected} (truncated or appended)", map.len())));
        }
        let s = Snapshot { path: path.into(), header, map };
        if mode == OpenMode::Verify {
            if crc32c::crc32c(s.data_bytes()) != s.header.data_crc {
                return Err(ClusterError::corrupt(path, "feature data checksum mismatch"));
            }
            if crc32c::crc32c(s.id_bytes()) != s.header.ids_crc {
                return Err(ClusterError::corrupt(path, "record id checksum mismatch"));
            }
        }
        Ok(s)
    }

    pub fn len(&self) -> usize {
        self.header.n as usize
    }
    pub fn is_empty(&self) -> bool {
        self.header.n == 0
    }
    pub fn dim(&self) -> usize {
        self.header.d as usize
    }

    fn data_bytes(&self) -> &[u8] {
        &self.map[HEADER_LEN..HEADER_LEN + self.header.data_len().unwrap_or(0)]
    }
    fn id_bytes(&self) -> &[u8] {
        let start = HEADER_LEN + self.header.data_len().unwrap_or(0);
        &self.map[start..]
    }

    /// The features as f32: borrowed straight from the map for f32 files (no copy), converted
    /// for f16 files.
    pub fn features(&self) -> Cow<'_, [f32]> {
        let bytes = self.data_bytes();
        match self.header.dtype {
            FeatureDtype::F32 => {
                // The map is page-aligned and the data starts at byte 64, so it is f32-aligned;
                // align_to checks that and falls back to a copy if it ever were not.
                // SAFETY: every bit pattern is a valid f32.
                let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
                if pre.is_empty() && post.is_empty() && cfg!(target_endian = "little") {
                    Cow::Borrowed(mid)
                } else {
                    Cow::Owned(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
                }
            }
            FeatureDtype::F16 => Cow::Owned(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.id_bytes().chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
    }
}

/// Several ranks' snapshots seen as one N×D matrix in rank order.
#[derive(Debug)]
pub struct SnapshotSet {
    pub parts: Vec<Snapshot>,
}

impl SnapshotSet {
    /// Opens every file; they must share d and dtype. Files are ordered by their rank field.
    pub fn open(paths: &[PathBuf], mode: OpenMode) -> Result<SnapshotSet> {
        let mut parts = paths.iter().map(|p| Snapshot::open(p, mode)).collect::<Result<Vec<_>>>()?;
        parts.sort_by_key(|s| s.header.rank);
        if let Some(first) = parts.first() {
            for s in &parts[1..] {
                if s.header.d != first.header.d {
                    return Err(ClusterError::Invalid(format!(
                        "{}: dimension {} differs from {} in {}",
                        s.path.display(),
                        s.header.d,
                        first.header.d,
                        first.path.display()
                    )));
                }
            }
            let mut ranks: Vec<u32> = parts.iter().map(|s| s.header.rank).collect();
            ranks.dedup();
            if ranks.len() != parts.len() {
                return Err(ClusterError::Invalid("two snapshots claim the same rank".into()));
            }
        }
        Ok(SnapshotSet { parts })
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Snapshot::len).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dim(&self) -> usize {
        self.parts.first().map(Snapshot::dim).unwrap_or(0)
    }

    /// Iterates over each rank's block of rows (borrowed from the maps for f32 files).
    pub fn blocks(&self) -> impl Iterator<Item = Cow<'_, [f32]>> {
        self.parts.iter().map(Snapshot::features)
    }

    /// All ids in row order.
    pub fn ids(&self) -> Vec<u64> {
        self.parts.iter().flat_map(Snapshot::ids).collect()
    }

    /// Copies all features into one contiguous row-major buffer (what k-means consumes).
    pub fn to_vec(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len() * self.dim());
        for b in self.blocks() {
            out.extend_from_slice(&b);
        }
        out
    }
}
