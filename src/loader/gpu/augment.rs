//! The augmentations of [`crate::loader::augment`] on whole batches of tch tensors, on any
//! device (the GPU in training, the CPU in tests).
//!
//! Pixels stay float32 in [0, 255] and are truncated after every colour op, the way
//! torchvision's tensor path treats uint8 images, so a view made here matches the CPU path's
//! view of the same draws ([`ViewPlan`]) to within one grey level (rounding order inside the
//! convolutions and the resampler is all that differs). Per-sample parameters are tensors of
//! shape [n, 1, 1, 1]; ops that only some samples take run on that subset (index_select,
//! op, index_copy), so each op costs one pass over the samples that take it.

use crate::loader::augment::{center_crop_offsets, gaussian_kernel, resize_shorter};
use crate::loader::decode::Rect;
use crate::loader::multicrop::{Geometry, ViewPlan, ViewSpec};
use tch::{Device, Kind, Tensor};

/// How crops are resampled to the view size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Resample {
    /// Per sample: crop, then bilinear with antialiasing (torchvision's
    /// `resized_crop(..., antialias=True)`; matches the CPU path).
    #[default]
    Antialias,
    /// One `grid_sample` over the whole batch (bilinear, no antialiasing: fastest, softer
    /// aliasing guarantees when a crop is shrunk more than 2x).
    Batched,
}

/// Decoded images of one batch on one device: uint8 [n, 3, max_h, max_w], image k occupying
/// the top-left `sizes[k]` = (width, height) corner.
pub struct DecodedBatch {
    pub pixels: Tensor,
    pub sizes: Vec<(u32, u32)>,
}

impl DecodedBatch {
    /// Image `k` as a uint8 [3, h, w] view (no copy).
    pub fn image(&self, k: usize) -> Tensor {
        let (w, h) = self.sizes[k];
        self.pixels.get(k as i64).narrow(1, 0, h as i64).narrow(2, 0, w as i64)
    }
}

fn per_sample(values: &[f32], device: Device) -> Tensor {
    Tensor::from_slice(values).view([-1, 1, 1, 1]).to_device(device)
}

fn index(idx: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(idx).to_device(device)
}

/// Runs `op` on the samples listed in `idx` only; the others are left as they are.
fn on_subset(x: &Tensor, idx: &[i64], op: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    if idx.is_empty() {
        return x.shallow_clone();
    }
    let i = index(idx, x.device());
    x.index_copy(0, &i, &op(&x.index_select(0, &i)))
}

/// uint8 truncation of float pixels: clamp to [0, 255], drop the fraction.
fn to_u8_grid(x: &Tensor) -> Tensor {
    x.clamp(0.0, 255.0).trunc()
}

/// Resampled or filtered pixels back on the uint8 grid: rounded, clamped to [0, 255].
fn rounded_u8_grid(x: &Tensor) -> Tensor {
    x.round().clamp(0.0, 255.0)
}

/// torchvision's grey level 0.2989 R + 0.587 G + 0.114 B, truncated: [n, 1, h, w].
pub fn gray(x: &Tensor) -> Tensor {
    let c = |k: i64| x.narrow(1, k, 1);
    (c(0) * 0.2989 + c(1) * 0.587 + c(2) * 0.114).trunc()
}

pub fn grayscale(x: &Tensor) -> Tensor {
    gray(x).expand_as(x).contiguous()
}

/// `ratio * x + (1 - ratio) * other`, truncated (torchvision's `_blend`).
fn blend(x: &Tensor, other: &Tensor, ratio: &Tensor) -> Tensor {
    to_u8_grid(&(x * ratio + other * (-ratio + 1.0)))
}

pub fn adjust_brightness(x: &Tensor, f: &Tensor) -> Tensor {
    to_u8_grid(&(x * f))
}

pub fn adjust_contrast(x: &Tensor, f: &Tensor) -> Tensor {
    // The mean of the truncated grey image, summed in f64 like the CPU path.
    let mean = gray(x).to_kind(Kind::Double).mean_dim([1i64, 2, 3].as_slice(), true, Kind::Double).to_kind(Kind::Float);
    blend(x, &mean, f)
}

pub fn adjust_saturation(x: &Tensor, f: &Tensor) -> Tensor {
    blend(x, &gray(x), f)
}

/// torchvision `adjust_hue` (tensor path): to HSV, h = (h + f) mod 1, back, `* 255.999`
/// truncated.
pub fn adjust_hue(x: &Tensor, f: &Tensor) -> Tensor {
    let x = x / 255.0;
    let (r, g, b) = (x.narrow(1, 0, 1), x.narrow(1, 1, 1), x.narrow(1, 2, 1));
    let maxc = r.maximum(&g).maximum(&b);
    let minc = r.minimum(&g).minimum(&b);
    let eqc = maxc.eq_tensor(&minc);
    let ones = maxc.ones_like();
    let cr = &maxc - &minc;
    let s = &cr / maxc.where_self(&eqc.logical_not(), &ones);
    let div = cr.where_self(&eqc.logical_not(), &ones);
    let (rc, gc, bc) = ((&maxc - &r) / &div, (&maxc - &g) / &div, (&maxc - &b) / &div);
    let is_r = maxc.eq_tensor(&r);
    let is_g = maxc.eq_tensor(&g).logical_and(&is_r.logical_not());
    // Same operation order as the CPU path (2 + rc - bc, 4 + gc - rc) for identical rounding.
    let h = (&bc - &gc).where_self(&is_r, &(((&rc + 2.0) - &bc).where_self(&is_g, &((&gc + 4.0) - &rc))));
    let h = (h / 6.0 + 1.0).fmod(1.0);
    let h = (h + f).remainder(1.0);
    let v = maxc;
    let i6 = (&h * 6.0).floor();
    let fr = &h * 6.0 - &i6;
    let p = (&v * (-&s + 1.0)).clamp(0.0, 1.0);
    let q = (&v * (-(&s * &fr) + 1.0)).clamp(0.0, 1.0);
    let t = (&v * (-(&s * (-&fr + 1.0)) + 1.0)).clamp(0.0, 1.0);
    let i = i6.remainder(6.0);
    let pick = |vals: [&Tensor; 6]| {
        let mut out = vals[5].shallow_clone();
        for k in (0..5).rev() {
            out = vals[k].where_self(&i.eq(k as f64), &out);
        }
        out
    };
    let ro = pick([&v, &q, &p, &p, &t, &v]);
    let go = pick([&t, &v, &v, &q, &p, &p]);
    let bo = pick([&p, &p, &t, &v, &v, &q]);
    (Tensor::cat(&[ro, go, bo], 1) * 255.999).trunc()
}

/// Gaussian blur with one sigma per sample (`sigmas.len()` = n), kernel `ksize`, reflect
/// padding, rounded: a separable depthwise convolution over all n x 3 planes at once.
pub fn gaussian_blur(x: &Tensor, ksize: usize, sigmas: &[f32]) -> Tensor {
    let (n, c, h, w) = x.size4().unwrap_or((0, 3, 0, 0));
    let weights: Vec<f32> = sigmas.iter().flat_map(|&s| gaussian_kernel(ksize, s)).collect();
    let k = ksize as i64;
    let r = k / 2;
    // One kernel per plane: [n, k] -> [n * 3, 1, ...].
    let per_plane = Tensor::from_slice(&weights).to_device(x.device()).view([n, 1, k]).expand([n, c, k], false).reshape([n * c, 1, k]);
    let planes = x.reshape([1, n * c, h, w]);
    let horiz = planes.reflection_pad2d([r, r, 0, 0]).conv2d(&per_plane.view([n * c, 1, 1, k]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    let vert = horiz.reflection_pad2d([0, 0, r, r]).conv2d(&per_plane.view([n * c, 1, k, 1]), None::<Tensor>, [1, 1], [0, 0], [1, 1], n * c);
    rounded_u8_grid(&vert.reshape([n, c, h, w]))
}

/// Crops `rects` (decoded-pixel coordinates, one per sample) out of `images` and resamples
/// each to `size` x `size`: float [n, 3, size, size] in [0, 255].
pub fn resized_crops(images: &DecodedBatch, rects: &[Rect], size: u32, mode: Resample) -> Tensor {
    let s = size as i64;
    match mode {
        Resample::Antialias => {
            let views: Vec<Tensor> = rects
                .iter()
                .enumerate()
                .map(|(k, rect)| {
                    let img = images.image(k);
                    let (w, h) = images.sizes[k];
                    // Whole pixels: the crop boxes of a full-size decode are whole already.
                    let x0 = (rect.x.round() as i64).clamp(0, w as i64 - 1);
                    let y0 = (rect.y.round() as i64).clamp(0, h as i64 - 1);
                    let cw = (rect.w.round() as i64).clamp(1, w as i64 - x0);
                    let ch = (rect.h.round() as i64).clamp(1, h as i64 - y0);
                    let crop = img.narrow(1, y0, ch).narrow(2, x0, cw).unsqueeze(0).to_kind(Kind::Float);
                    crop.internal_upsample_bilinear2d_aa([s, s], false, None, None)
                })
                .collect();
            rounded_u8_grid(&Tensor::cat(&views, 0))
        }
        Resample::Batched => {
            let (_, _, hmax, wmax) = images.pixels.size4().unwrap_or((0, 3, 1, 1));
            let (wm, hm) = (wmax as f64, hmax as f64);
            // Output pixel u samples source x = rect.x + (u + 0.5) * rect.w / size - 0.5, which
            // in grid_sample's normalised coordinates (align_corners = false) is affine in the
            // output's normalised coordinate.
            let theta: Vec<f32> = rects
                .iter()
                .flat_map(|r| [r.w / wm, 0.0, (2.0 * r.x + r.w) / wm - 1.0, 0.0, r.h / hm, (2.0 * r.y + r.h) / hm - 1.0])
                .map(|v| v as f32)
                .collect();
            let n = rects.len() as i64;
            let theta = Tensor::from_slice(&theta).view([n, 2, 3]).to_device(images.pixels.device());
            let grid = Tensor::affine_grid_generator(&theta, [n, 3, s, s], false);
            // bilinear (0), border padding (1)
            rounded_u8_grid(&images.pixels.to_kind(Kind::Float).grid_sampler(&grid, 0, 1, false))
        }
    }
}

/// Resize(resize) + CenterCrop(size) of every image, the torchvision way (whole image resized
/// with antialiasing, then cropped): float [n, 3, size, size] in [0, 255].
pub fn resize_center_crops(images: &DecodedBatch, resize: u32, size: u32) -> Tensor {
    let views: Vec<Tensor> = (0..images.sizes.len())
        .map(|k| {
            let (w, h) = images.sizes[k];
            let (nw, nh) = resize_shorter(w, h, resize);
            let (top, left) = center_crop_offsets(nw, nh, size);
            let resized = images.image(k).unsqueeze(0).to_kind(Kind::Float).internal_upsample_bilinear2d_aa([nh as i64, nw as i64], false, None, None);
            let s = size as i64;
            // A crop larger than the resized image is padded with zeros, as CenterCrop does.
            resized.constant_pad_nd([0, (s - nw as i64 - left as i64).max(0), 0, (s - nh as i64 - top as i64).max(0)]).narrow(2, (top as i64).max(0), s).narrow(3, (left as i64).max(0), s)
        })
        .collect();
    rounded_u8_grid(&Tensor::cat(&views, 0))
}

/// One view slot for a whole batch: crop + resample, flip, grayscale / colour jitter in each
/// sample's drawn order, blur, and the four rotations when the spec asks for them. `plans[k]` is
/// sample k's plan for this slot; the images are full-size decodes, so the plans' crop boxes
/// apply as they are. Returns uint8 [n (x 4 with rotations), 3, size, size].
pub fn augment_view(images: &DecodedBatch, plans: &[&ViewPlan], spec: &ViewSpec, mode: Resample) -> Tensor {
    let device = images.pixels.device();
    let rects: Vec<Rect> = plans.iter().map(|p| p.rect).collect();
    let mut x = match spec.geometry {
        // Resize + CenterCrop is one fixed window per image: made the exact torchvision way.
        Geometry::ResizeCenter { resize } => resize_center_crops(images, resize, spec.size),
        Geometry::RandomResized { .. } => resized_crops(images, &rects, spec.size, mode),
    };
    let select = |f: &dyn Fn(&ViewPlan) -> bool| -> Vec<i64> { plans.iter().enumerate().filter(|(_, p)| f(p)).map(|(k, _)| k as i64).collect() };

    x = on_subset(&x, &select(&|p| p.ops.flip), |v| v.flip([3]));
    let gray_idx = select(&|p| p.ops.gray);
    if spec.gray_first {
        x = on_subset(&x, &gray_idx, grayscale);
    }
    // Colour jitter: at each of the 4 positions, every op runs on the samples whose drawn
    // order puts it there.
    for pos in 0..4 {
        for op in 0..4u8 {
            let mut idx = Vec::new();
            let mut factors = Vec::new();
            for (k, p) in plans.iter().enumerate() {
                if let Some(j) = &p.ops.jitter {
                    if let (true, Some(f)) = (j.order[pos] == op, j.factors[op as usize]) {
                        idx.push(k as i64);
                        factors.push(f);
                    }
                }
            }
            if idx.is_empty() {
                continue;
            }
            let f = per_sample(&factors, device);
            x = on_subset(&x, &idx, |v| match op {
                0 => adjust_brightness(v, &f),
                1 => adjust_contrast(v, &f),
                2 => adjust_saturation(v, &f),
                _ => adjust_hue(v, &f),
            });
        }
    }
    if !spec.gray_first {
        x = on_subset(&x, &gray_idx, grayscale);
    }
    let blur_idx = select(&|p| p.ops.blur.is_some());
    if let Some((_, ksize)) = plans.iter().find_map(|p| p.ops.blur) {
        let sigmas: Vec<f32> = blur_idx.iter().filter_map(|&k| plans[k as usize].ops.blur.map(|b| b.0)).collect();
        x = on_subset(&x, &blur_idx, |v| gaussian_blur(v, ksize, &sigmas));
    }
    let x = x.to_kind(Kind::Uint8);
    if spec.rotations {
        // Per sample the four rotations in a row (RotNet's 0, 90, 180, 270 counter-clockwise).
        let (n, c, h, w) = x.size4().unwrap_or((0, 3, 0, 0));
        let rots: Vec<Tensor> = (0..4).map(|k| x.rot90(k, [2, 3])).collect();
        Tensor::stack(&rots, 1).reshape([n * 4, c, h, w])
    } else {
        x
    }
}
