//! `idx --images I [--labels L] [--classes C] [--limit N]`: the raw IDX files of MNIST and
//! Fashion-MNIST (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, optionally gzipped).
//!
//! IDX is big-endian: a magic number `0x0000 TT DD` (TT = element type, 0x08 = unsigned byte;
//! DD = number of dimensions), one u32 per dimension, then the elements row-major. Images are
//! magic 2051 (u8, 3 dims: N x rows x cols), labels 2049 (u8, 1 dim: N).
//!
//! Every image becomes one item: a lossless 8-bit grayscale PNG of its rows x cols bytes, keyed
//! `<images file stem>/<index:05>.png`, labelled from the labels file. Items are numbered in
//! file order. Everything about the files is checked when the source is opened, before any
//! record is written: magic numbers, that the header's dimensions match the file's length (so a
//! hostile header declaring huge dimensions is refused without allocating anything), that the
//! label count equals the image count, and that every label names a class of `--classes`.
//!
//! Raw files are read in place (one positioned read per image, so resumed runs skip finished
//! images without reading them); gzipped files are decompressed once into memory, at most
//! [`MAX_GZ_BYTES`].

use super::Source;
use crate::error::{Error, Result};
use crate::item::{Fetch, FetchError, Item, Payload};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// IDX magic of an image file: unsigned bytes, 3 dimensions (N, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic of a label file: unsigned bytes, 1 dimension (N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest decompressed size of a gzipped IDX file held in memory (gunzip bigger ones first).
pub const MAX_GZ_BYTES: u64 = 4 << 30;
/// Images larger than this are encoded on the blocking pool instead of inline.
const INLINE_ENCODE_BYTES: usize = 64 << 10;

/// What is wrong with an IDX file (or the classes file that goes with it).
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("{len} bytes is too short for an IDX header ({need} bytes)")]
    TooShort { len: u64, need: u64 },
    #[error("magic number {found} (0x{found:08x}) is not an IDX {what} file (expected {expected}, 0x{expected:08x}){hint}")]
    BadMagic { found: u32, expected: u32, what: &'static str, hint: &'static str },
    #[error("the header declares {dims} but a dimension is 0")]
    ZeroDimension { dims: String },
    #[error("the header declares {dims} = {declared} bytes of data, but the file holds {actual}")]
    SizeMismatch { dims: String, declared: u128, actual: u64 },
    #[error("the header declares {dims} = {declared} bytes of data, more than the {limit} bytes a gzipped IDX file may decompress to; gunzip it first")]
    TooLargeForMemory { dims: String, declared: u128, limit: u64 },
    #[error("not a readable gzip stream: {0}")]
    Gzip(std::io::Error),
    #[error("holds {labels} labels but {images} has {images_count} images")]
    CountMismatch { labels: u64, images: PathBuf, images_count: u64 },
    #[error("label {label} of image {index} is out of range: {classes} names {count} classes (labels 0..{count})")]
    LabelOutOfRange { index: u64, label: u8, classes: PathBuf, count: usize },
    #[error("names no classes (expected one class name per line, line i naming label i)")]
    NoClasses,
    #[error("line {line} is empty: every line names the class of its label")]
    EmptyClassName { line: usize },
}

/// Where the pixels are: read in place from the raw file, or the decompressed `.gz` in memory.
enum Pixels {
    File(File),
    Memory(Bytes),
}

/// One opened IDX file: its dimensions and where its data starts.
struct IdxFile {
    dims: Vec<u32>,
    pixels: Pixels,
    /// Offset of the first element within `pixels`.
    data_offset: u64,
}

fn idx_error(path: &Path, problem: IdxError) -> Error {
    Error::Idx { path: path.to_path_buf(), problem }
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

fn dims_text(dims: &[u32]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Opens an IDX file with magic `expected` (`what` names the kind in errors) and checks that its
/// length equals what the header declares. Raw files stay on disk; `.gz` files are
/// decompressed, with the declared size as the limit of what is read.
fn open_idx(path: &Path, expected: u32, what: &'static str) -> Result<IdxFile> {
    let ndims = (expected & 0xff) as usize;
    let header_len = 4 + 4 * ndims as u64;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let gz = is_gz(path);
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file.try_clone().map_err(|e| Error::io(path, e))?)))
    } else {
        Box::new(&file)
    };
    let read_err = |e: std::io::Error| if gz { idx_error(path, IdxError::Gzip(e)) } else { Error::io(path, e) };

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(read_err)?;
    if got < 4 {
        return Err(idx_error(path, IdxError::TooShort { len: got as u64, need: header_len }));
    }
    let found = be32(&magic);
    if found != expected {
        let hint = match found {
            IMAGES_MAGIC => ": this is an images file",
            LABELS_MAGIC => ": this is a labels file",
            0x1f8b_0800..=0x1f8b_08ff => ": gzip data; name the file *.gz",
            _ => "",
        };
        return Err(idx_error(path, IdxError::BadMagic { found, expected, what, hint }));
    }
    let mut rest = vec![0u8; 4 * ndims];
    let got = read_up_to(&mut reader, &mut rest).map_err(read_err)?;
    if got < rest.len() {
        return Err(idx_error(path, IdxError::TooShort { len: 4 + got as u64, need: header_len }));
    }
    let dims: Vec<u32> = rest.chunks_exact(4).map(be32).collect();
    let declared: u128 = dims.iter().map(|&d| d as u128).product();
    let text = dims_text(&dims);
    // N may be 0 (an empty set); an image of 0 rows or columns is not an image.
    if dims.iter().skip(1).any(|&d| d == 0) {
        return Err(idx_error(path, IdxError::ZeroDimension { dims: text }));
    }
    if !gz {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let actual = len.saturating_sub(header_len);
        if declared != actual as u128 || len < header_len {
            return Err(idx_error(path, IdxError::SizeMismatch { dims: text, declared, actual }));
        }
        drop(reader);
        return Ok(IdxFile { dims, pixels: Pixels::File(file), data_offset: header_len });
    }
    if declared > MAX_GZ_BYTES as u128 {
        return Err(idx_error(path, IdxError::TooLargeForMemory { dims: text, declared, limit: MAX_GZ_BYTES }));
    }
    // Read at most one byte more than declared: enough to see trailing data, never a bomb. The
    // buffer grows with what really arrives, so a lying header allocates nothing up front.
    let mut data = Vec::new();
    reader.take(declared as u64 + 1).read_to_end(&mut data).map_err(read_err)?;
    if data.len() as u128 != declared {
        let actual = data.len() as u64;
        let dims = if actual as u128 > declared { format!("{text} (and more after it)") } else { text };
        return Err(idx_error(path, IdxError::SizeMismatch { dims, declared, actual }));
    }
    Ok(IdxFile { dims, pixels: Pixels::Memory(Bytes::from(data)), data_offset: 0 })
}

/// Reads until `buf` is full or the input ends; returns how many bytes arrived.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `classes.txt`: one class name per line, line i names label i (trailing blank lines ignored).
pub fn read_classes(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').trim().to_string()).collect();
    while names.last().is_some_and(|n| n.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(idx_error(path, IdxError::NoClasses));
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(idx_error(path, IdxError::EmptyClassName { line: i + 1 }));
    }
    Ok(names)
}

pub struct IdxSource {
    images_path: PathBuf,
    labels_path: Option<PathBuf>,
    classes_path: Option<PathBuf>,
    classes: Option<Vec<String>>,
    limit: Option<u64>,
    /// Items listed: the file's image count, or `limit` when smaller.
    count: u64,
    rows: u32,
    cols: u32,
    images: Arc<IdxFile>,
    labels: Option<Arc<Vec<u8>>>,
    /// Key prefix: the images file name without `.gz`.
    stem: Arc<str>,
}

impl IdxSource {
    /// Opens and checks the files (see the module comment); `limit` keeps the first N images.
    pub fn open(images: &Path, labels: Option<&Path>, classes: Option<&Path>, limit: Option<u64>) -> Result<Self> {
        let img = open_idx(images, IMAGES_MAGIC, "images (u8, N x rows x cols)")?;
        let (n, rows, cols) = (img.dims[0] as u64, img.dims[1], img.dims[2]);
        let classes_list = classes.map(read_classes).transpose()?;
        let labels_data = match labels {
            None => None,
            Some(lp) => {
                let lab = open_idx(lp, LABELS_MAGIC, "labels (u8, N)")?;
                let count = lab.dims[0] as u64;
                if count != n {
                    return Err(idx_error(lp, IdxError::CountMismatch { labels: count, images: images.into(), images_count: n }));
                }
                let bytes = match lab.pixels {
                    Pixels::Memory(b) => b.to_vec(),
                    Pixels::File(f) => {
                        // Length checked against the header: exactly `count` bytes follow it.
                        let mut buf = vec![0u8; count as usize];
                        f.read_exact_at(&mut buf, lab.data_offset).map_err(|e| Error::io(lp, e))?;
                        buf
                    }
                };
                if let (Some(names), Some(cp)) = (&classes_list, classes) {
                    if let Some((i, &l)) = bytes.iter().enumerate().find(|(_, &l)| l as usize >= names.len()) {
                        return Err(idx_error(
                            lp,
                            IdxError::LabelOutOfRange { index: i as u64, label: l, classes: cp.into(), count: names.len() },
                        ));
                    }
                }
                Some(Arc::new(bytes))
            }
        };
        let name = images.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "idx".into());
        let stem = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".GZ")).unwrap_or(&name).to_string();
        Ok(IdxSource {
            images_path: images.into(),
            labels_path: labels.map(Into::into),
            classes_path: classes.map(Into::into),
            classes: classes_list,
            limit,
            count: limit.map_or(n, |l| l.min(n)),
            rows,
            cols,
            images: Arc::new(img),
            labels: labels_data,
            stem: stem.into(),
        })
    }

    /// Images listed, rows, columns.
    pub fn shape(&self) -> (u64, u32, u32) {
        (self.count, self.rows, self.cols)
    }
}

impl Source for IdxSource {
    fn kind(&self) -> &'static str {
        "idx"
    }

    fn describe(&self) -> serde_json::Value {
        let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        serde_json::json!({
            "kind": "idx",
            "images": abs(&self.images_path),
            "labels": self.labels_path.as_deref().map(abs),
            "classes": self.classes_path.as_deref().map(abs),
            "limit": self.limit,
        })
    }

    fn classes(&self) -> Option<Vec<String>> {
        self.classes.clone()
    }

    fn len_hint(&self) -> Option<u64> {
        Some(self.count)
    }

    fn items(&self) -> BoxStream<'static, Result<Item>> {
        let (images, labels, stem) = (self.images.clone(), self.labels.clone(), self.stem.clone());
        let (count, rows, cols) = (self.count, self.rows, self.cols);
        Box::pin(async_stream::stream! {
            for index in 0..count {
                let label = labels.as_ref().and_then(|l| l.get(index as usize)).map(|&l| l as i64);
                let fetch = ImageFetch { file: images.clone(), index, rows, cols };
                yield Ok(Item { index, key: format!("{stem}/{index:05}.png"), label, payload: Payload::Fetch(Box::new(fetch)) });
            }
        })
    }
}

/// Reads image `index` and encodes it as a PNG.
struct ImageFetch {
    file: Arc<IdxFile>,
    index: u64,
    rows: u32,
    cols: u32,
}

impl ImageFetch {
    fn read(&self, max_bytes: u64) -> Result<Bytes, FetchError> {
        let size = self.rows as u64 * self.cols as u64;
        if size > max_bytes {
            return Err(FetchError::TooLarge { bytes: size, limit: max_bytes });
        }
        let start = self.file.data_offset + self.index * size;
        let pixels: Vec<u8> = match &self.file.pixels {
            Pixels::Memory(b) => {
                let range = usize::try_from(start).ok().zip(usize::try_from(start + size).ok());
                match range.and_then(|(s, e)| b.get(s..e)) {
                    Some(p) => p.to_vec(),
                    None => return Err(FetchError::Permanent(format!("image {} lies past the end of the data", self.index))),
                }
            }
            Pixels::File(f) => {
                let mut buf = vec![0u8; size as usize];
                f.read_exact_at(&mut buf, start).map_err(|e| FetchError::from_io(&format!("image {}", self.index), e))?;
                buf
            }
        };
        encode_gray_png(&pixels, self.cols, self.rows).map(Bytes::from).map_err(FetchError::Permanent)
    }
}

impl Fetch for ImageFetch {
    fn fetch(&self, max_bytes: u64) -> BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            if (self.rows as u64 * self.cols as u64) <= INLINE_ENCODE_BYTES as u64 {
                return self.read(max_bytes);
            }
            let me = ImageFetch { file: self.file.clone(), index: self.index, rows: self.rows, cols: self.cols };
            tokio::task::spawn_blocking(move || me.read(max_bytes))
                .await
                .map_err(|e| FetchError::Permanent(format!("IDX reader task failed: {e}")))?
        })
    }
}

/// A lossless 8-bit grayscale PNG of `pixels` (row-major, `width` x `height`). Deterministic:
/// the same pixels always give the same bytes.
pub fn encode_gray_png(pixels: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(pixels.len() / 2 + 128);
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(pixels).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn problem(r: Result<IdxSource>) -> (PathBuf, IdxError) {
        match r {
            Err(Error::Idx { path, problem }) => (path, problem),
            Err(e) => panic!("expected an IDX error, got {e}"),
            Ok(_) => panic!("expected an IDX error, got a source"),
        }
    }

    #[test]
    fn small_files_raw_and_gz_give_the_same_items() {
        let d = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
        let images = idx(IMAGES_MAGIC, &[3, 2, 4], &pixels);
        let labels = idx(LABELS_MAGIC, &[3], &[2, 0, 1]);
        let raw = IdxSource::open(&write(d.path(), "i", &images), Some(&write(d.path(), "l", &labels)), None, None).unwrap();
        let gzd =
            IdxSource::open(&write(d.path(), "i.gz", &gz(&images)), Some(&write(d.path(), "l.gz", &gz(&labels))), None, Some(2))
                .unwrap();
        assert_eq!(raw.shape(), (3, 2, 4));
        assert_eq!(gzd.shape(), (2, 2, 4));
        for (i, want) in pixels.chunks(8).enumerate().take(2) {
            for src in [&raw, &gzd] {
                let f = ImageFetch { file: src.images.clone(), index: i as u64, rows: 2, cols: 4 };
                let png = f.read(1 << 20).unwrap();
                let img = image::load_from_memory(&png).unwrap().into_luma8();
                assert_eq!((img.width(), img.height()), (4, 2));
                assert_eq!(img.as_raw().as_slice(), want);
            }
        }
        assert_eq!(raw.labels.as_deref().unwrap(), &vec![2, 0, 1]);
        assert_eq!(gzd.stem.as_ref(), "i");
    }

    #[test]
    fn hostile_headers_are_typed_errors() {
        let d = tempfile::tempdir().unwrap();
        let ok_labels = write(d.path(), "l", &idx(LABELS_MAGIC, &[2], &[0, 1]));
        // Huge declared dimensions in a tiny file: refused from the length, nothing allocated.
        let huge = write(d.path(), "huge", &idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]));
        assert!(matches!(problem(IdxSource::open(&huge, None, None, None)).1, IdxError::SizeMismatch { .. }));
        let huge_gz = write(d.path(), "huge.gz", &gz(&idx(IMAGES_MAGIC, &[u32::MAX, 1 << 16, 1 << 16], &[1, 2, 3])));
        assert!(matches!(problem(IdxSource::open(&huge_gz, None, None, None)).1, IdxError::TooLargeForMemory { .. }));
        let lying_gz = write(d.path(), "lying.gz", &gz(&idx(IMAGES_MAGIC, &[1000, 28, 28], &[7; 100])));
        assert!(matches!(problem(IdxSource::open(&lying_gz, None, None, None)).1, IdxError::SizeMismatch { actual: 100, .. }));
        // Labels given as images, and the other way round.
        let (p, e) = problem(IdxSource::open(&ok_labels, None, None, None));
        assert_eq!(p, ok_labels);
        assert!(e.to_string().contains("this is a labels file"), "{e}");
        let images = write(d.path(), "i", &idx(IMAGES_MAGIC, &[2, 1, 1], &[5, 6]));
        assert!(matches!(problem(IdxSource::open(&images, Some(&images), None, None)).1, IdxError::BadMagic { .. }));
        // Short files, zero dimensions, gzip without .gz, garbage named .gz.
        let short = write(d.path(), "short", &[0, 0, 8, 3, 0, 0]);
        assert!(matches!(problem(IdxSource::open(&short, None, None, None)).1, IdxError::TooShort { len: 6, need: 16 }));
        let empty = write(d.path(), "empty", &[]);
        assert!(matches!(problem(IdxSource::open(&empty, None, None, None)).1, IdxError::TooShort { len: 0, .. }));
        let zero = write(d.path(), "zero", &idx(IMAGES_MAGIC, &[5, 0, 28], &[]));
        assert!(matches!(problem(IdxSource::open(&zero, None, None, None)).1, IdxError::ZeroDimension { .. }));
        let unnamed_gz = write(d.path(), "unnamed", &gz(&idx(IMAGES_MAGIC, &[2, 1, 1], &[5, 6])));
        let e = problem(IdxSource::open(&unnamed_gz, None, None, None)).1;
        assert!(e.to_string().contains("gzip"), "{e}");
        let garbage_gz = write(d.path(), "garbage.gz", b"this is not gzip at all, not even close");
        assert!(matches!(problem(IdxSource::open(&garbage_gz, None, None, None)).1, IdxError::Gzip(_)));
        // Counts and labels.
        let three = write(d.path(), "l3", &idx(LABELS_MAGIC, &[3], &[0, 1, 2]));
        let (p, e) = problem(IdxSource::open(&images, Some(&three), None, None));
        assert_eq!(p, three);
        assert!(matches!(e, IdxError::CountMismatch { labels: 3, images_count: 2, .. }), "{e}");
        let one_class = write(d.path(), "classes.txt", b"only\n\n");
        let e = problem(IdxSource::open(&images, Some(&ok_labels), Some(&one_class), None)).1;
        assert!(matches!(e, IdxError::LabelOutOfRange { index: 1, label: 1, count: 1, .. }), "{e}");
        let no_classes = write(d.path(), "none.txt", b"\n\n");
        assert!(matches!(problem(IdxSource::open(&images, None, Some(&no_classes), None)).1, IdxError::NoClasses));
        let hole = write(d.path(), "hole.txt", b"a\n\nb\n");
        assert!(matches!(problem(IdxSource::open(&images, None, Some(&hole), None)).1, IdxError::EmptyClassName { line: 2 }));
        // A trailing byte is a size mismatch too.
        let long = write(d.path(), "long", &idx(IMAGES_MAGIC, &[2, 1, 1], &[5, 6, 7]));
        assert!(matches!(problem(IdxSource::open(&long, None, None, None)).1, IdxError::SizeMismatch { actual: 3, .. }));
    }
}
