//! Minimal `.npy` (NumPy format 1.0/2.0) reading and writing, little-endian C-order only.
//! Chosen for assignments and centroids because `numpy.load(path, mmap_mode="r")` maps them
//! without a copy, and because users hand silt feature matrices as `.npy` already.
//! Writes are atomic: temporary name, fsync, rename.

use super::error::{ClusterError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element types silt reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I64,
    I32,
    U64,
    U32,
    U8,
}

impl Dtype {
    fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
            Dtype::I64 => "<i8",
            Dtype::I32 => "<i4",
            Dtype::U64 => "<u8",
            Dtype::U32 => "<u4",
            Dtype::U8 => "|u1",
        }
    }
    fn from_descr(d: &str) -> Option<Self> {
        Some(match d {
            "<f4" => Dtype::F32,
            "<f8" => Dtype::F64,
            "<i8" => Dtype::I64,
            "<i4" => Dtype::I32,
            "<u8" => Dtype::U64,
            "<u4" => Dtype::U32,
            "|u1" | "<u1" => Dtype::U8,
            _ => return None,
        })
    }
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::U8 => 1,
        }
    }
}

/// Plain-old-data element types that map to a [`Dtype`].
pub trait Element: Copy {
    const DTYPE: Dtype;
    fn to_le(self) -> [u8; 8];
}
macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: Dtype = $d;
            fn to_le(self) -> [u8; 8] {
                let mut b = [0u8; 8];
                b[..std::mem::size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
                b
            }
        }
    };
}
element!(f32, Dtype::F32);
element!(f64, Dtype::F64);
element!(i64, Dtype::I64);
element!(i32, Dtype::I32);
element!(u64, Dtype::U64);
element!(u32, Dtype::U32);
element!(u8, Dtype::U8);

/// Writes `data` with `shape` as a `.npy` file, atomically.
pub fn write<T: Element>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(ClusterError::Invalid(format!("npy {}: shape {shape:?} but {} elements", path.display(), data.len())));
    }
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", T::DTYPE.descr(), shape_txt);
    // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * T::DTYPE.size());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let size = T::DTYPE.size();
    for &v in data {
        bytes.extend_from_slice(&v.to_le()[..size]);
    }
    atomic_write(path, &bytes)
}

/// Write to `path.tmp`, fsync, rename over `path`: readers never see a half-written file.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(|e| ClusterError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ClusterError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ClusterError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ClusterError::io(path, e))
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A memory-mapped `.npy` array.
#[derive(Debug)]
pub struct NpyFile {
    pub path: PathBuf,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    offset: usize,
    map: Mmap,
}

impl NpyFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ClusterError::io(path, e))?;
        // SAFETY: the file is opened read-only; silt publishes files by rename, never in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ClusterError::io(path, e))?;
        let bad = |why: &str| ClusterError::corrupt(path, format!("not a .npy file: {why}"));
        if map.len() < 10 || &map[..6] != MAGIC {
            return Err(bad("missing magic"));
        }
        let (hlen, hstart) = match map[6] {
            1 => (u16::from_le_bytes([map[8], map[9]]) as usize, 10),
            2 | 3 if map.len() >= 12 => (u32::from_le_bytes([map[8], map[9], map[10], map[11]]) as usize, 12),
            v => return Err(bad(&format!("version {v}"))),
        };
        let header = map.get(hstart..hstart + hlen).ok_or_else(|| bad("truncated header"))?;
        let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
        let descr = dict_value(header, "descr").ok_or_else(|| bad("no descr"))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let dtype = Dtype::from_descr(descr)
            .ok_or_else(|| ClusterError::Invalid(format!("{}: unsupported dtype {descr}", path.display())))?;
        if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
            return Err(ClusterError::Invalid(format!("{}: Fortran-order arrays are not supported", path.display())));
        }
        let shape_txt = dict_value(header, "shape").ok_or_else(|| bad("no shape"))?;
        let shape = shape_txt
            .trim_start_matches('(')
            .split(')')
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
            .collect::<Result<Vec<_>>>()?;
        let offset = hstart + hlen;
        let need = shape.iter().product::<usize>() * dtype.size();
        if map.len() < offset + need {
            return Err(ClusterError::corrupt(path, format!("data truncated: {} bytes, shape needs {need}", map.len() - offset)));
        }
        Ok(NpyFile { path: path.to_path_buf(), dtype, shape, offset, map })
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len() * self.dtype.size()]
    }

    /// All elements as f32 (converting f64), e.g. a feature matrix.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let b = self.bytes();
        Ok(match self.dtype {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
            d => return Err(ClusterError::Invalid(format!("{}: expected float features, found {d:?}", self.path.display()))),
        })
    }

    /// All elements as i64 (integer dtypes only), e.g. a label vector.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let b = self.bytes();
        let as8 = |c: &[u8]| -> [u8; 8] { c.try_into().unwrap_or([0; 8]) };
        Ok(match self.dtype {
            Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(as8(c))).collect(),
            Dtype::U64 => b.chunks_exact(8).map(|c| u64::from_le_bytes(as8(c)) as i64).collect(),
            Dtype::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Dtype::U32 => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
            Dtype::U8 => b.iter().map(|&v| v as i64).collect(),
            d => return Err(ClusterError::Invalid(format!("{}: expected integer labels, found {d:?}", self.path.display()))),
        })
    }
}

/// The text after `'key':` up to the next top-level comma (shape tuples keep their commas).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let start = header.find(&pat_a).map(|i| i + pat_a.len()).or_else(|| header.find(&pat_b).map(|i| i + pat_b.len()))?;
    let rest = header[start..].trim_start();
    if rest.starts_with('(') {
        return rest.find(')').map(|e| &rest[..=e]);
    }
    Some(rest.split(',').next()?.trim())
}
