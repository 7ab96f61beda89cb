//! Augmentations with torchvision's semantics.
//!
//! Geometry follows `torchvision.transforms` exactly (RandomResizedCrop's 10 tries then the
//! centre fallback; Resize(shorter side) + CenterCrop). Colour ops follow the tensor path of
//! `torchvision.transforms.functional` on uint8 images: float32 arithmetic, truncation back to
//! uint8, grey = 0.2989 R + 0.587 G + 0.114 B; hue through HSV; Gaussian blur with reflect
//! padding and rounding. All randomness comes through [`Draws`], so a test can replay the
//! numbers torchvision would draw.

use super::decode::{Rect, RgbImage};
use super::rng::Draws;
use super::simd::simd_kernel;
use fast_image_resize::{images::ImageRef, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

#[derive(Debug, thiserror::Error)]
pub enum AugmentError {
    #[error("resize: {0}")]
    Resize(String),
}

/// A crop box in full-size pixels: top `i`, left `j`, height `h`, width `w` (torchvision order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub i: u32,
    pub j: u32,
    pub h: u32,
    pub w: u32,
}

impl CropBox {
    pub fn rect(&self) -> Rect {
        Rect { x: self.j as f64, y: self.i as f64, w: self.w as f64, h: self.h as f64 }
    }
}

/// `RandomResizedCrop.get_params(img, scale, ratio)` for an image of `width` x `height`.
pub fn random_resized_crop_params(width: u32, height: u32, scale: (f64, f64), ratio: (f64, f64), d: &mut dyn Draws) -> CropBox {
    let area = width as f64 * height as f64;
    // torch.log(torch.tensor(ratio)) is float32.
    let log_ratio = ((ratio.0 as f32).ln() as f64, (ratio.1 as f32).ln() as f64);
    for _ in 0..10 {
        let target_area = area * d.uniform(scale.0, scale.1);
        let aspect = (d.uniform(log_ratio.0, log_ratio.1) as f32).exp() as f64;
        let w = round_half_even((target_area * aspect).sqrt());
        let h = round_half_even((target_area / aspect).sqrt());
        if 0.0 < w && w <= width as f64 && 0.0 < h && h <= height as f64 {
            let (w, h) = (w as u32, h as u32);
            let i = d.randint((height - h + 1) as u64) as u32;
            let j = d.randint((width - w + 1) as u64) as u32;
            return CropBox { i, j, h, w };
        }
    }
    // Fallback to central crop.
    let in_ratio = width as f64 / height as f64;
    let (min_r, max_r) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < min_r {
        (width, round_half_even(width as f64 / min_r) as u32)
    } else if in_ratio > max_r {
        (round_half_even(height as f64 * max_r) as u32, height)
    } else {
        (width, height)
    };
    CropBox { i: (height - h.min(height)) / 2, j: (width - w.min(width)) / 2, h, w }
}

/// Python's `round` (ties to even).
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// `Resize(resize)` (shorter side) then `CenterCrop(crop)`, as the region of the full image it
/// keeps, in full-size pixels (fractional: the crop happens after the resize).
pub fn resize_center_crop_rect(width: u32, height: u32, resize: u32, crop: u32) -> Rect {
    let (nw, nh) = resize_shorter(width, height, resize);
    let (top, left) = center_crop_offsets(nw, nh, crop);
    let (sx, sy) = (nw as f64 / width as f64, nh as f64 / height as f64);
    Rect { x: left / sx, y: top / sy, w: crop as f64 / sx, h: crop as f64 / sy }
}

/// `Resize(resize)`'s output size: the shorter side becomes `resize`, the longer one keeps the
/// aspect ratio (truncated, as torchvision does).
pub fn resize_shorter(width: u32, height: u32, resize: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = (resize as u64 * long as u64 / short.max(1) as u64) as u32;
    if width <= height {
        (resize, new_long)
    } else {
        (new_long, resize)
    }
}

/// `CenterCrop(crop)`'s (top, left) in a `width` x `height` image.
pub fn center_crop_offsets(width: u32, height: u32, crop: u32) -> (f64, f64) {
    (round_half_even((height as f64 - crop as f64) / 2.0), round_half_even((width as f64 - crop as f64) / 2.0))
}

/// Resizes `rect` of `src` to `out_w` x `out_h` (bilinear with antialiasing, like PIL).
pub fn resize_region(resizer: &mut Resizer, src: &RgbImage, rect: &Rect, out_w: u32, out_h: u32, out: &mut [u8]) -> Result<(), AugmentError> {
    let err = |e: &dyn std::fmt::Display| AugmentError::Resize(e.to_string());
    let src_view = ImageRef::new(src.width, src.height, &src.pixels, PixelType::U8x3).map_err(|e| err(&e))?;
    let mut dst = fast_image_resize::images::Image::from_slice_u8(out_w, out_h, out, PixelType::U8x3).map_err(|e| err(&e))?;
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)).crop(rect.x, rect.y, rect.w, rect.h);
    resizer.resize(&src_view, &mut dst, &opts).map_err(|e| err(&e))
}

/// Mirrors an HWC RGB image left-right in place.
pub fn hflip(px: &mut [u8], w: usize, h: usize) {
    for row in px.chunks_exact_mut(w * 3).take(h) {
        for x in 0..w / 2 {
            for c in 0..3 {
                row.swap(3 * x + c, 3 * (w - 1 - x) + c);
            }
        }
    }
}

/// Rotates a square HWC RGB image counter-clockwise by `k` quarter turns (RotNet's 0/90/180/270,
/// `np.flipud(np.transpose(img, (1,0,2)))` for 90).
pub fn rotate90(src: &[u8], side: usize, k: u8, out: &mut [u8]) {
    for y in 0..side {
        for x in 0..side {
            // Output (y, x) takes input (sy, sx).
            let (sy, sx) = match k % 4 {
                0 => (y, x),
                1 => (x, side - 1 - y),
                2 => (side - 1 - y, side - 1 - x),
                _ => (side - 1 - x, y),
            };
            let (o, s) = (3 * (y * side + x), 3 * (sy * side + sx));
            out[o..o + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
}

#[inline(always)]
fn gray_f(r: f32, g: f32, b: f32) -> f32 {
    0.2989f32 * r + 0.587f32 * g + 0.114f32 * b
}

/// `x as u8` (saturating, truncating; NaN gives 0) in a form LLVM vectorises: the saturating
/// float-to-u8 cast is emitted one lane at a time (measured: half of `adjust_saturation`).
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN, which to_int_unchecked must not see
fn to_u8(x: f32) -> u8 {
    // f32::max/min return the other operand for NaN, so this is in [0, 255], never NaN
    let x = x.max(0.0).min(255.0);
    // SAFETY: x is finite and within i32's range (just clamped)
    unsafe { x.to_int_unchecked::<i32>() as u8 }
}

#[inline(always)]
fn blend(a: f32, b: f32, ratio: f32) -> u8 {
    to_u8(ratio * a + (1.0 - ratio) * b)
}

/// Pixels per planar block of the colour kernels: interleaved RGB is split into r, g, b float
/// arrays so that the per-pixel arithmetic (branch-free) runs on whole vectors.
const BLOCK: usize = 64;

type Plane = [f32; BLOCK];

/// Loads up to BLOCK interleaved RGB pixels of `chunk` into planes; the rest of the planes is
/// zeroed (a black pixel: callers ignore what it produces).
#[inline(always)]
fn load_block(chunk: &[u8], r: &mut Plane, g: &mut Plane, b: &mut Plane) {
    let n = chunk.len() / 3;
    for (((p, r), g), b) in chunk.chunks_exact(3).zip(r.iter_mut()).zip(g.iter_mut()).zip(b.iter_mut()) {
        (*r, *g, *b) = (p[0] as f32, p[1] as f32, p[2] as f32);
    }
    for plane in [r, g, b] {
        plane[n..].fill(0.0);
    }
}

#[inline(always)]
fn store_block(chunk: &mut [u8], out: &[[u8; BLOCK]; 3]) {
    for (i, p) in chunk.chunks_exact_mut(3).enumerate().take(BLOCK) {
        (p[0], p[1], p[2]) = (out[0][i], out[1][i], out[2][i]);
    }
}

/// A per-pixel colour op on planar blocks. A trait rather than a closure so that `apply` can be
/// `#[inline(always)]`: a closure as large as the hue's was left out of line, in the baseline
/// build, by the AVX builds (measured: 2.7x slower).
trait BlockOp {
    /// The new values of BLOCK pixels (planes r, g, b holding 0..=255) into `out` (planar u8).
    fn apply(&self, r: &Plane, g: &Plane, b: &Plane, out: &mut [[u8; BLOCK]; 3]);
}

/// Rewrites every pixel of interleaved RGB `px` with `op`, BLOCK pixels at a time.
#[inline(always)]
fn map_pixels(px: &mut [u8], op: impl BlockOp) {
    let (mut r, mut g, mut b) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
    let mut out = [[0u8; BLOCK]; 3];
    for chunk in px.chunks_mut(3 * BLOCK) {
        load_block(chunk, &mut r, &mut g, &mut b);
        op.apply(&r, &g, &b, &mut out);
        store_block(chunk, &out);
    }
}

struct ToGray;

impl BlockOp for ToGray {
    #[inline(always)]
    fn apply(&self, r: &Plane, g: &Plane, b: &Plane, out: &mut [[u8; BLOCK]; 3]) {
        for i in 0..BLOCK {
            let l = to_u8(gray_f(r[i], g[i], b[i]));
            (out[0][i], out[1][i], out[2][i]) = (l, l, l);
        }
    }
}

/// Blend with the (truncated) grey image by factor `.0`.
struct Saturation(f32);

impl BlockOp for Saturation {
    #[inline(always)]
    fn apply(&self, r: &Plane, g: &Plane, b: &Plane, out: &mut [[u8; BLOCK]; 3]) {
        let f = self.0;
        for i in 0..BLOCK {
            let l = to_u8(gray_f(r[i], g[i], b[i])) as f32;
            (out[0][i], out[1][i], out[2][i]) = (blend(r[i], l, f), blend(g[i], l, f), blend(b[i], l, f));
        }
    }
}

/// Hue shifted by `.0` (in turns), then `* 255.999` truncated.
struct HueShift(f32);

impl BlockOp for HueShift {
    #[inline(always)]
    fn apply(&self, r: &Plane, g: &Plane, b: &Plane, out: &mut [[u8; BLOCK]; 3]) {
        for i in 0..BLOCK {
            let (ro, go, bo) = hue_shift(r[i] / 255.0, g[i] / 255.0, b[i] / 255.0, self.0);
            out[0][i] = to_u8(ro * 255.999);
            out[1][i] = to_u8(go * 255.999);
            out[2][i] = to_u8(bo * 255.999);
        }
    }
}

simd_kernel! {
    /// torchvision `rgb_to_grayscale(img, 3)` on uint8 (truncating), in place.
    pub fn grayscale / grayscale_at (px: &mut [u8]) {
        map_pixels(px, ToGray);
    }
}

pub fn adjust_brightness(px: &mut [u8], f: f32) {
    let lut: Vec<u8> = (0..=255u8).map(|v| blend(v as f32, 0.0, f)).collect();
    for v in px.iter_mut() {
        *v = lut[*v as usize];
    }
}

simd_kernel! {
    /// The mean of the truncated grey image, as torchvision's `adjust_contrast` takes it (the
    /// sum of whole numbers is exact in u64, as it was in f64).
    fn gray_mean / gray_mean_at (px: &[u8], out: &mut f32) {
        let (mut r, mut g, mut b) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
        let mut sum = 0u64;
        for chunk in px.chunks(3 * BLOCK) {
            load_block(chunk, &mut r, &mut g, &mut b);
            // the zero padding adds grey 0
            let block: u32 = (0..BLOCK).map(|i| to_u8(gray_f(r[i], g[i], b[i])) as u32).sum();
            sum += block as u64;
        }
        let n = (px.len() / 3).max(1);
        *out = (sum as f64 / n as f64) as f32;
    }
}

pub fn adjust_contrast(px: &mut [u8], f: f32) {
    let mut mean = 0.0;
    gray_mean(px, &mut mean);
    let lut: Vec<u8> = (0..=255u8).map(|v| blend(v as f32, mean, f)).collect();
    for v in px.iter_mut() {
        *v = lut[*v as usize];
    }
}

simd_kernel! {
    pub fn adjust_saturation / adjust_saturation_at (px: &mut [u8], f: f32) {
        map_pixels(px, Saturation(f));
    }
}

/// `x mod 1` into [0, 1), the value of `x.rem_euclid(1.0)` for |x| < 2^31 (hue values are within
/// a few units; a zero remainder is +0.0 where fmod gives -0.0 for negative integers):
/// `rem_euclid` lowers to a libm `fmodf` call per pixel, which LLVM even hoists out of a guarding
/// branch (a quarter of the simclr preset's augmentation time, measured).
#[inline(always)]
fn wrap_unit(x: f32) -> f32 {
    // x - trunc(x) is exact below 2^23 (and fmod's own result); negatives move up by one, as
    // rem_euclid does
    let r = x - trunc_small(x);
    if r < 0.0 {
        r + 1.0
    } else {
        r
    }
}

/// `x.trunc()` for |x| < 2^31 (NaN gives a finite number), as vector instructions: `trunc` is a
/// libm call on the baseline target, and the saturating `x as i32` is emitted one lane at a time
/// with branches for NaN and range.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp keeps NaN, which to_int_unchecked must not see
fn trunc_small(x: f32) -> f32 {
    let x = x.max(-2.0e9).min(2.0e9);
    // SAFETY: x is finite and within i32's range (just clamped)
    unsafe { x.to_int_unchecked::<i32>() as f32 }
}

/// One pixel of torchvision's `adjust_hue` (r, g, b in [0, 1]), written without branches (every
/// `if` is a select) so that a block of pixels runs as vectors.
#[inline(always)]
fn hue_shift(r: f32, g: f32, b: f32, f: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let eqc = maxc == minc;
    let cr = maxc - minc;
    let s = cr / if eqc { 1.0 } else { maxc };
    let div = if eqc { 1.0 } else { cr };
    let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
    let h = if maxc == r {
        bc - gc
    } else if maxc == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    let h = wrap_unit(h / 6.0 + 1.0);
    let h = wrap_unit(h + f);
    let v = maxc;
    // h is in [0, 1): truncation is floor; h * 6 may round up to 6, which is sector 0
    let i6 = trunc_small(h * 6.0);
    let fr = h * 6.0 - i6;
    let sector = if i6 >= 6.0 { 0.0 } else { i6 };
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * fr)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - fr))).clamp(0.0, 1.0);
    // sectors 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    let ro = if sector == 0.0 || sector == 5.0 { v } else if sector == 1.0 { q } else if sector == 4.0 { t } else { p };
    let go = if sector == 1.0 || sector == 2.0 { v } else if sector == 0.0 { t } else if sector == 3.0 { q } else { p };
    let bo = if sector == 3.0 || sector == 4.0 { v } else if sector == 2.0 { t } else if sector == 5.0 { q } else { p };
    (ro, go, bo)
}

simd_kernel! {
    /// torchvision `adjust_hue` (tensor path): RGB -> HSV in float32, h = (h + f) mod 1, back,
    /// then `* 255.999` truncated.
    pub fn adjust_hue / adjust_hue_at (px: &mut [u8], f: f32) {
        map_pixels(px, HueShift(f));
    }
}

/// ColorJitter strengths (torchvision's arguments; 0 = off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

/// One draw of `ColorJitter.get_params`: the order (a permutation of 0..4 = b, c, s, h) and
/// the factors (None = op off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    pub order: [u8; 4],
    pub factors: [Option<f32>; 4],
}

impl ColorJitter {
    pub fn sample(&self, d: &mut dyn Draws) -> JitterParams {
        // torch.randperm(4), then one uniform per enabled op in b, c, s, h order.
        let mut order = [0u8, 1, 2, 3];
        for i in (1..4).rev() {
            let j = d.randint(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let range = |s: f64| if s > 0.0 { Some(((1.0 - s).max(0.0), 1.0 + s)) } else { None };
        let ranges = [range(self.brightness), range(self.contrast), range(self.saturation), if self.hue > 0.0 { Some((-self.hue, self.hue)) } else { None }];
        let mut factors = [None; 4];
        for (k, r) in ranges.iter().enumerate() {
            if let Some((lo, hi)) = r {
                factors[k] = Some(d.uniform(*lo, *hi) as f32);
            }
        }
        JitterParams { order, factors }
    }
}

impl JitterParams {
    pub fn apply(&self, px: &mut [u8]) {
        for &op in &self.order {
            match (op, self.factors[op as usize]) {
                (0, Some(f)) => adjust_brightness(px, f),
                (1, Some(f)) => adjust_contrast(px, f),
                (2, Some(f)) => adjust_saturation(px, f),
                (3, Some(f)) => adjust_hue(px, f),
                _ => {}
            }
        }
    }
}

/// torchvision's 1-D Gaussian kernel (`_get_gaussian_kernel1d`).
pub fn gaussian_kernel(size: usize, sigma: f32) -> Vec<f32> {
    let half = (size as f32 - 1.0) * 0.5;
    let step = if size > 1 { 2.0 * half / (size as f32 - 1.0) } else { 0.0 };
    let pdf: Vec<f32> = (0..size).map(|k| (-half + k as f32 * step) / sigma).map(|x| (-0.5 * x * x).exp()).collect();
    let sum: f32 = pdf.iter().sum();
    pdf.into_iter().map(|p| p / sum).collect()
}

#[inline]
fn reflect(i: isize, n: isize) -> usize {
    let mut i = i;
    if n == 1 {
        return 0;
    }
    while i < 0 || i >= n {
        if i < 0 {
            i = -i;
        }
        if i >= n {
            i = 2 * (n - 1) - i;
        }
    }
    i as usize
}

/// Lanes of `weighted_rows`' accumulators (4 AVX2 registers): small enough to stay in registers.
const LANES: usize = 32;

/// `out[j] = sum_t k[t] * rows[t][j]`, summed from 0 in tap order (the same sums, bit for bit, as
/// adding each tap's whole row into `out`), LANES outputs at a time so that the running sums stay
/// in registers instead of going through memory once per tap.
#[inline(always)]
fn weighted_rows(k: &[f32], rows: &[&[f32]], out: &mut [f32]) {
    let n = out.len();
    let mut x = 0;
    while x + LANES <= n {
        let mut acc = [0f32; LANES];
        for (&kv, row) in k.iter().zip(rows) {
            for (a, s) in acc.iter_mut().zip(&row[x..x + LANES]) {
                *a += kv * s;
            }
        }
        out[x..x + LANES].copy_from_slice(&acc);
        x += LANES;
    }
    for (j, o) in out.iter_mut().enumerate().skip(x) {
        *o = k.iter().zip(rows).fold(0.0, |a, (&kv, row)| a + kv * row[j]);
    }
}

simd_kernel! {
/// `gaussian_blur(img, [k, k], [sigma, sigma])`: separable, reflect padding, rounded to uint8.
/// Both passes are weighted sums of whole rows ([`weighted_rows`]), which the compiler vectorises.
pub fn gaussian_blur / gaussian_blur_at (px: &mut [u8], w: usize, h: usize, ksize: usize, sigma: f32) {
    let k = gaussian_kernel(ksize, sigma);
    let r = ksize / 2;
    let row_len = w * 3;
    // Horizontal pass into `tmp` (f32), through a reflect-padded copy of each row: tap t reads
    // the padded row shifted by t pixels.
    let mut padded = vec![0f32; (w + 2 * r) * 3];
    let mut tmp = vec![0f32; w * h * 3];
    for y in 0..h {
        let row = &px[y * row_len..(y + 1) * row_len];
        for (p, chunk) in padded.chunks_exact_mut(3).enumerate() {
            let sx = reflect(p as isize - r as isize, w as isize);
            for c in 0..3 {
                chunk[c] = row[3 * sx + c] as f32;
            }
        }
        let taps: Vec<&[f32]> = (0..ksize).map(|t| &padded[3 * t..3 * t + row_len]).collect();
        weighted_rows(&k, &taps, &mut tmp[y * row_len..(y + 1) * row_len]);
    }
    // Vertical pass: each output row is a weighted sum of (reflected) rows of `tmp`.
    let mut acc = vec![0f32; row_len];
    for y in 0..h {
        let taps: Vec<&[f32]> = (0..ksize)
            .map(|t| reflect(y as isize + t as isize - r as isize, h as isize))
            .map(|sy| &tmp[sy * row_len..(sy + 1) * row_len])
            .collect();
        weighted_rows(&k, &taps, &mut acc);
        for (o, a) in px[y * row_len..(y + 1) * row_len].iter_mut().zip(&acc) {
            *o = to_u8(a.round());
        }
    }
}
}

/// Kernel size SimCLR uses: 10% of the side, made odd.
pub fn blur_kernel_for(side: u32) -> usize {
    let k = (side as f64 * 0.1) as usize;
    if k.is_multiple_of(2) { k + 1 } else { k }.max(3)
}

#[cfg(test)]
mod tests {
    use crate::loader::simd::{cpu_level, Level};

    /// Pseudo-random bytes (xorshift), with runs of equal channels (grey pixels, maxc == minc).
    fn pixels(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v: Vec<u8> = (0..n * 3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        for p in v.chunks_exact_mut(3).step_by(7) {
            (p[1], p[2]) = (p[0], p[0]);
        }
        v
    }

    /// The per-pixel branching form of torchvision's HSV round trip (silt's first version).
    fn hue_reference(p: &mut [u8], f: f32) {
        let (r, g, b) = (p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0);
        let maxc = r.max(g).max(b);
        let minc = r.min(g).min(b);
        let eqc = maxc == minc;
        let cr = maxc - minc;
        let s = cr / if eqc { 1.0 } else { maxc };
        let div = if eqc { 1.0 } else { cr };
        let (rc, gc, bc) = ((maxc - r) / div, (maxc - g) / div, (maxc - b) / div);
        let h = if maxc == r { bc - gc } else if maxc == g { 2.0 + rc - bc } else { 4.0 + gc - rc };
        let h = (h / 6.0 + 1.0).rem_euclid(1.0);
        let h = (h + f).rem_euclid(1.0);
        let i6 = (h * 6.0).floor();
        let fr = h * 6.0 - i6;
        let p_ = (maxc * (1.0 - s)).clamp(0.0, 1.0);
        let q = (maxc * (1.0 - s * fr)).clamp(0.0, 1.0);
        let t = (maxc * (1.0 - s * (1.0 - fr))).clamp(0.0, 1.0);
        let v = maxc;
        let (ro, go, bo) = match (i6 as i32).rem_euclid(6) {
            0 => (v, t, p_),
            1 => (q, v, p_),
            2 => (p_, v, t),
            3 => (p_, q, v),
            4 => (t, p_, v),
            _ => (v, p_, q),
        };
        (p[0], p[1], p[2]) = ((ro * 255.999) as u8, (go * 255.999) as u8, (bo * 255.999) as u8);
    }

    #[test]
    fn branch_free_hue_equals_the_per_pixel_reference() {
        for (n, f) in [(1000usize, 0.1f32), (777, -0.37), (64, 0.5), (65, -0.5), (3, 0.0)] {
            let mut ours = pixels(n, n as u64);
            let mut theirs = ours.clone();
            super::adjust_hue_at(Level::Baseline, &mut ours, f);
            theirs.chunks_exact_mut(3).for_each(|p| hue_reference(p, f));
            assert_eq!(ours, theirs, "n = {n}, f = {f}");
        }
    }

    /// The blur as whole-row passes, one tap at a time (silt's first version).
    fn blur_reference(px: &mut [u8], w: usize, h: usize, ksize: usize, sigma: f32) {
        let k = super::gaussian_kernel(ksize, sigma);
        let r = ksize as isize / 2;
        let at = |x: isize, n: usize| super::reflect(x, n as isize);
        let mut tmp = vec![0f32; w * h * 3];
        for y in 0..h {
            for x in 0..w * 3 {
                let (px_x, c) = (x / 3, x % 3);
                tmp[y * w * 3 + x] = k.iter().enumerate().fold(0.0, |a, (t, kv)| a + kv * px[(y * w + at(px_x as isize + t as isize - r, w)) * 3 + c] as f32);
            }
        }
        for y in 0..h {
            for x in 0..w * 3 {
                let a = k.iter().enumerate().fold(0.0f32, |a, (t, kv)| a + kv * tmp[at(y as isize + t as isize - r, h) * w * 3 + x]);
                px[y * w * 3 + x] = a.round().clamp(0.0, 255.0) as u8;
            }
        }
    }

    #[test]
    fn register_blocked_blur_equals_the_tap_by_tap_reference() {
        for (w, h, k, sigma) in [(224usize, 224usize, 23usize, 1.3f32), (96, 96, 9, 0.4), (31, 17, 23, 2.0), (5, 40, 3, 0.1)] {
            let mut ours = pixels(w * h, (w + h) as u64);
            let mut theirs = ours.clone();
            super::gaussian_blur_at(Level::Baseline, &mut ours, w, h, k, sigma);
            blur_reference(&mut theirs, w, h, k, sigma);
            assert_eq!(ours, theirs, "{w}x{h}, k = {k}, sigma = {sigma}");
        }
    }

    #[test]
    fn every_simd_build_gives_the_baseline_bytes() {
        let levels: Vec<Level> = Level::ALL.into_iter().filter(|&l| l > Level::Baseline && l <= cpu_level()).collect();
        if levels.is_empty() {
            println!("skipped: this CPU has neither AVX2 nor AVX-512");
            return;
        }
        for level in levels {
            for n in [1usize, 63, 64, 65, 500, 224 * 224] {
                let src = pixels(n, 7 + n as u64);
                type Kernel = fn(Level, &mut [u8]);
                let kernels: [(&str, Kernel); 4] = [
                    ("grayscale", |l, p| super::grayscale_at(l, p)),
                    ("saturation", |l, p| super::adjust_saturation_at(l, p, 1.37)),
                    ("hue", |l, p| super::adjust_hue_at(l, p, -0.21)),
                    ("blur", |l, p| super::gaussian_blur_at(l, p, p.len() / 3, 1, 3, 0.8)),
                ];
                for (name, kernel) in kernels {
                    let (mut a, mut b) = (src.clone(), src.clone());
                    kernel(Level::Baseline, &mut a);
                    kernel(level, &mut b);
                    assert_eq!(a, b, "{name}, {n} pixels, {}", level.name());
                }
                let (mut m0, mut m1) = (0.0, 0.0);
                super::gray_mean_at(Level::Baseline, &src, &mut m0);
                super::gray_mean_at(level, &src, &mut m1);
                assert_eq!(m0, m1, "grey mean, {n} pixels, {}", level.name());
                let expected = src.chunks_exact(3).map(|p| super::gray_f(p[0] as f32, p[1] as f32, p[2] as f32) as u8 as f64).sum::<f64>() / n as f64;
                assert_eq!(m1, expected as f32, "grey mean vs the f64 sum, {n} pixels");
            }
            for (w, h) in [(224usize, 224usize), (96, 96), (31, 17)] {
                let src = pixels(w * h, (w * h) as u64);
                let (mut a, mut b) = (src.clone(), src.clone());
                super::gaussian_blur_at(Level::Baseline, &mut a, w, h, 23, 1.3);
                super::gaussian_blur_at(level, &mut b, w, h, 23, 1.3);
                assert_eq!(a, b, "blur {w}x{h}, {}", level.name());
            }
        }
    }

    #[test]
    fn wrap_unit_is_rem_euclid() {
        // a dense sweep over the values hue shifts produce, and the edges
        for i in 0..700_000u32 {
            let x = (-3.0 + i as f64 * 1.0e-5) as f32;
            for y in [x, f32::from_bits(x.to_bits() + 1), f32::from_bits(x.to_bits().saturating_sub(1))] {
                // equal values (fmod keeps the sign of a zero remainder: -0.0 there, +0.0 here)
                assert_eq!(super::wrap_unit(y), y.rem_euclid(1.0), "x = {y}");
            }
        }
        for x in [0.0f32, -0.0, 1.0, -1.0, 2.0, 0.999_999_94, -1e-8, 1.5] {
            assert_eq!(super::wrap_unit(x), x.rem_euclid(1.0), "x = {x}");
        }
    }
}
