//! Perceptual near-duplicate detection (`--dedup perceptual`): a 64-bit DCT hash (pHash) of
//! each image and a multi-index over the hashes of the records kept so far.
//!
//! The hash is the classic pHash (as Python's `imagehash.phash`): the image in grayscale,
//! downscaled to 32x32 with an area filter, its 2-D DCT-II, the 8x8 lowest frequencies, one bit
//! per coefficient: above the median of the 64 or not. Re-encoding, resizing (same aspect),
//! mild colour or brightness changes move few bits; different pictures differ in about half.
//! JPEGs are decoded by libjpeg-turbo at the smallest DCT scale (1/8, 1/4, 1/2) that keeps the
//! shorter side at 32 pixels or more, so hashing a 20-megapixel photo costs about as much as
//! decoding a thumbnail.
//!
//! The index finds, for a new hash, the closest kept hash within `threshold` bits (ties: the
//! smaller record id) among the records listed *before* the new item, which makes the decision
//! independent of what a crashed run published after it. Multi-index hashing: the 64 bits are
//! cut into four 16-bit chunks, each with a table of the kept hashes by chunk value; two hashes
//! within t bits have a chunk within t/4 bits (pigeonhole), so a lookup probes, per chunk, the
//! values within t/4 bits of its own (17 values at the default t = 6) and compares only the
//! hashes listed there, stored inline in the bucket so the scan is sequential.

use silt_shards::ContentType;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Default `--phash-threshold`: at most this many of the 64 bits may differ.
pub const DEFAULT_THRESHOLD: u32 = 6;
/// Largest accepted `--phash-threshold` (the multi-index needs threshold + 1 chunks of 64 bits).
pub const MAX_THRESHOLD: u32 = 16;

const SIDE: usize = 32;
const LOW: usize = 8;

/// The pHash of an encoded image; `Err` when it cannot be decoded (CMYK JPEGs, broken data).
/// `max_pixels` bounds what the non-JPEG decoders may allocate. Never panics.
pub fn phash(bytes: &[u8], content_type: ContentType, max_pixels: u64) -> Result<u64, String> {
    match catch_unwind(AssertUnwindSafe(|| {
        let (w, h, gray) = decode_gray(bytes, content_type, max_pixels)?;
        Ok(phash_gray(&*downscale(w, h, gray)?))
    })) {
        Ok(r) => r,
        Err(_) => Err("decoder panicked while hashing".into()),
    }
}

/// pHash of a 32x32 grayscale image.
pub fn phash_gray(pixels: &[u8; SIDE * SIDE]) -> u64 {
    let cos = cos_table();
    // Rows first: tmp[y][u] = sum_x p[y][x] cos(u, x); then out[v][u] = sum_y tmp[y][u] cos(v, y).
    let mut tmp = [[0f64; LOW]; SIDE];
    for (y, row) in tmp.iter_mut().enumerate() {
        for (u, t) in row.iter_mut().enumerate() {
            *t = (0..SIDE).map(|x| pixels[y * SIDE + x] as f64 * cos[u][x]).sum();
        }
    }
    let mut low = [0f64; LOW * LOW];
    for v in 0..LOW {
        for u in 0..LOW {
            low[v * LOW + u] = (0..SIDE).map(|y| tmp[y][u] * cos[v][y]).sum();
        }
    }
    let mut sorted = low;
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = (sorted[31] + sorted[32]) / 2.0;
    low.iter().fold(0u64, |h, &c| (h << 1) | (c > median) as u64)
}

fn cos_table() -> [[f64; SIDE]; LOW] {
    let mut t = [[0f64; SIDE]; LOW];
    for (k, row) in t.iter_mut().enumerate() {
        for (n, c) in row.iter_mut().enumerate() {
            *c = (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * SIDE) as f64).cos();
        }
    }
    t
}

/// Grayscale pixels (width, height, row-major bytes).
fn decode_gray(bytes: &[u8], ct: ContentType, max_pixels: u64) -> Result<(u32, u32, Vec<u8>), String> {
    if ct == ContentType::Jpeg {
        let mut d = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
        let header = d.read_header(bytes).map_err(|e| e.to_string())?;
        if matches!(header.colorspace, turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK) {
            return Err("CMYK JPEG: no grayscale decode".into());
        }
        if header.width as u64 * header.height as u64 > max_pixels {
            return Err("too many pixels".into());
        }
        for denom in [8, 4, 2] {
            let f = turbojpeg::ScalingFactor::new(1, denom);
            if f.scale(header.width.min(header.height)) >= SIDE {
                d.set_scaling_factor(f).map_err(|e| e.to_string())?;
                break;
            }
        }
        let s = header.scaled(d.scaling_factor());
        let mut image = turbojpeg::Image {
            pixels: vec![0u8; s.width * s.height],
            width: s.width,
            pitch: s.width,
            height: s.height,
            format: turbojpeg::PixelFormat::GRAY,
        };
        d.decompress(bytes, image.as_deref_mut()).map_err(|e| e.to_string())?;
        return Ok((s.width as u32, s.height as u32, image.pixels));
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| e.to_string())?.into_luma8();
    Ok((img.width(), img.height(), img.into_raw()))
}

/// Area-filtered resize to 32x32 (aspect not kept, as pHash does).
fn downscale(w: u32, h: u32, gray: Vec<u8>) -> Result<Box<[u8; SIDE * SIDE]>, String> {
    use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let src = Image::from_vec_u8(w, h, gray, PixelType::U8).map_err(|e| e.to_string())?;
    let mut dst = Image::new(SIDE as u32, SIDE as u32, PixelType::U8);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box)))
        .map_err(|e| e.to_string())?;
    let out: Box<[u8; SIDE * SIDE]> = dst.into_vec().into_boxed_slice().try_into().map_err(|_| "resize gave the wrong size".to_string())?;
    Ok(out)
}

pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Kept hashes, searchable by Hamming distance (see the module comment).
pub struct PerceptualIndex {
    threshold: u32,
    /// Chunk values within this many bits are probed: `threshold / CHUNKS`.
    radius: u32,
    /// Every 16-bit mask of at most `radius` bits (the probes around a chunk value).
    flips: Vec<u16>,
    /// Per chunk: chunk value -> (hash, record id) of the kept records with that value.
    tables: Vec<Vec<Vec<(u64, u64)>>>,
    len: usize,
}

/// Four 16-bit chunks: if two hashes are within t bits, one chunk is within t / 4 bits.
const CHUNKS: u32 = 4;

impl PerceptualIndex {
    pub fn new(threshold: u32) -> Self {
        let threshold = threshold.min(MAX_THRESHOLD);
        let radius = threshold / CHUNKS;
        let flips = (0..=u16::MAX).filter(|m| m.count_ones() <= radius).collect();
        let tables = (0..CHUNKS).map(|_| vec![Vec::new(); 1 << 16]).collect();
        PerceptualIndex { threshold, radius, flips, tables, len: 0 }
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Chunk values probed per lookup and chunk (1 + 16 at the default threshold).
    pub fn probes_per_chunk(&self) -> usize {
        debug_assert!(self.flips.len() == (0..=self.radius).map(|k| binomial(16, k)).sum::<usize>());
        self.flips.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The kept record closest to `hash` within the threshold, among those with an id below
    /// `before`: `(id, distance)`, ties to the smaller id.
    pub fn find(&self, hash: u64, before: u64) -> Option<(u64, u32)> {
        let mut best: Option<(u32, u64)> = None;
        for (c, table) in self.tables.iter().enumerate() {
            let value = (hash >> (16 * c)) as u16;
            for &flip in &self.flips {
                for &(h, id) in &table[(value ^ flip) as usize] {
                    let d = distance(h, hash);
                    if d <= self.threshold && id < before && best.is_none_or(|b| (d, id) < b) {
                        best = Some((d, id));
                    }
                }
            }
        }
        best.map(|(d, id)| (id, d))
    }

    /// Adds a kept record.
    pub fn insert(&mut self, hash: u64, id: u64) {
        for (c, table) in self.tables.iter_mut().enumerate() {
            table[(hash >> (16 * c)) as u16 as usize].push((hash, id));
        }
        self.len += 1;
    }

    /// Heap bytes held (capacities, not lengths), for the README's memory figure.
    pub fn heap_bytes(&self) -> usize {
        let buckets: usize = self.tables.iter().flatten().map(|b| b.capacity() * 16 + std::mem::size_of::<Vec<(u64, u64)>>()).sum();
        buckets + self.flips.capacity() * 2
    }
}

fn binomial(n: usize, k: u32) -> usize {
    (0..k as usize).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

/// `phashes.jsonl` line: the pHash of a kept record (hex, so the file reads well).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhashEntry {
    pub index: u64,
    pub phash: String,
}

impl PhashEntry {
    pub fn new(index: u64, hash: u64) -> Self {
        PhashEntry { index, phash: format!("{hash:016x}") }
    }

    pub fn hash(&self) -> Option<u64> {
        u64::from_str_radix(&self.phash, 16).ok()
    }
}

pub const PHASH_FILE: &str = "phashes.jsonl";

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(kept: &[(u64, u64)], hash: u64, before: u64, t: u32) -> Option<(u64, u32)> {
        kept.iter()
            .filter(|(_, id)| *id < before)
            .map(|&(h, id)| (distance(h, hash), id))
            .filter(|&(d, _)| d <= t)
            .min()
            .map(|(d, id)| (id, d))
    }

    #[test]
    fn multi_index_finds_what_a_linear_scan_finds() {
        let mut rng = fastrand::Rng::with_seed(7);
        for t in [0, 1, 3, 4, 6, 9, 16] {
            let mut idx = PerceptualIndex::new(t);
            let mut kept = Vec::new();
            for id in 0..3000u64 {
                // Half the hashes are near an earlier one, so matches happen at every distance.
                let h = if id > 0 && rng.bool() {
                    let (base, _) = kept[rng.usize(..kept.len())];
                    (0..rng.u32(0..=t + 2)).fold(base, |h: u64, _| h ^ (1 << rng.u32(0..64)))
                } else {
                    rng.u64(..)
                };
                let before = id + 1 - rng.u64(0..2);
                assert_eq!(idx.find(h, before), brute(&kept, h, before, t), "t={t} id={id}");
                if idx.find(h, id).is_none() {
                    idx.insert(h, id);
                    kept.push((h, id));
                }
            }
        }
    }

    /// A smooth random picture: a 20x12 grid of random grays, upscaled.
    fn picture(w: u32, h: u32) -> image::GrayImage {
        let mut rng = fastrand::Rng::with_seed(3);
        let grid = image::GrayImage::from_fn(20, 12, |_, _| image::Luma([rng.u8(..)]));
        image::imageops::resize(&grid, w, h, image::imageops::FilterType::CatmullRom)
    }

    fn png(img: &image::GrayImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn resized_copies_are_close_and_different_pictures_are_not() {
        let big = picture(640, 400);
        let small = image::imageops::resize(&big, 160, 100, image::imageops::FilterType::Triangle);
        let flipped = image::imageops::flip_horizontal(&big);
        let h = |i: &image::GrayImage| phash(&png(i), ContentType::Png, 1 << 30).unwrap();
        let (a, b, c) = (h(&big), h(&small), h(&flipped));
        assert!(distance(a, b) <= 2, "{a:016x} {b:016x}");
        assert!(distance(a, c) > 16, "{a:016x} {c:016x}");
        assert!(phash(b"not an image", ContentType::Png, 1 << 30).is_err());
    }

    #[test]
    fn memory_and_speed_for_a_million_hashes() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut idx = PerceptualIndex::new(DEFAULT_THRESHOLD);
        let n = 1_000_000u64;
        for id in 0..n {
            idx.insert(rng.u64(..), id);
        }
        let start = std::time::Instant::now();
        let queries = 20_000;
        let found = (0..queries).filter(|_| idx.find(rng.u64(..), n).is_some()).count();
        let per_query = start.elapsed() / queries;
        eprintln!(
            "1M hashes, threshold 6: {} MB of index, {per_query:?} per lookup, {} probes per chunk, {found} random hits",
            idx.heap_bytes() / 1_000_000,
            idx.probes_per_chunk()
        );
        assert_eq!(idx.probes_per_chunk(), 17);
        assert!(idx.heap_bytes() < 160 << 20, "{}", idx.heap_bytes());
    }
}
