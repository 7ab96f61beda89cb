//! Views and the per-sample pipeline: decode once, then cut every view (multi-crop) from it.
//!
//! A [`Pipeline`] is a list of [`ViewSpec`]s, each `count` views of one size with its own crop
//! rule and colour ops (SwAV's 2x224 + 6x96, PIC's 160 + 3x96, ...). For one sample all view
//! crops are drawn first (on the full-size image), then the record is decoded once at the
//! smallest DCT scale that still covers every crop at its output size, restricted to the union
//! of the crops, and each view is resized out of that.

use super::augment::{
    blur_kernel_for, gaussian_blur, grayscale, hflip, random_resized_crop_params, resize_center_crop_rect, resize_region, rotate90, AugmentError,
    ColorJitter,
};
use super::decode::{Decode, DecodeError, DecodeRequest, Rect};
use super::rng::{Draws, Rng};
use fast_image_resize::Resizer;
use silt_shards::Record;
use std::time::{Duration, Instant};

/// How a view's region of the image is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Geometry {
    /// RandomResizedCrop(size, scale, ratio).
    RandomResized { scale: (f64, f64), ratio: (f64, f64) },
    /// Resize(resize) (shorter side) + CenterCrop(size).
    ResizeCenter { resize: u32 },
}

/// `count` views of `size` x `size` pixels made the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewSpec {
    pub count: usize,
    pub size: u32,
    pub geometry: Geometry,
    /// Horizontal flip probability.
    pub flip: f64,
    /// ColorJitter and the probability it is applied.
    pub jitter: Option<(ColorJitter, f64)>,
    /// RandomGrayscale probability.
    pub gray: f64,
    /// Grayscale before jitter (InstDisc / MoCo v1 order) instead of after (MoCo v2, SimCLR).
    pub gray_first: bool,
    /// GaussianBlur probability and sigma range (kernel = 10% of the side, odd).
    pub blur: Option<(f64, (f64, f64))>,
    /// Emit all four rotations (0/90/180/270) of each view, with rotation labels 0..3 (RotNet).
    pub rotations: bool,
}

impl ViewSpec {
    /// A plain RandomResizedCrop + flip view.
    pub fn rrc(count: usize, size: u32, scale: (f64, f64)) -> Self {
        ViewSpec {
            count,
            size,
            geometry: Geometry::RandomResized { scale, ratio: (3.0 / 4.0, 4.0 / 3.0) },
            flip: 0.5,
            jitter: None,
            gray: 0.0,
            gray_first: false,
            blur: None,
            rotations: false,
        }
    }
    /// Images this spec emits per view (4 with rotations).
    pub fn images_per_view(&self) -> usize {
        if self.rotations {
            4
        } else {
            1
        }
    }
}

/// A named augmentation recipe: views plus the normalisation to apply on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub views: Vec<ViewSpec>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Pipeline {
    /// (spec index, instance) for every view a sample yields, in output order.
    pub fn view_slots(&self) -> Vec<(usize, usize)> {
        self.views.iter().enumerate().flat_map(|(k, v)| (0..v.count).map(move |c| (k, c))).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Augment(#[from] AugmentError),
    #[error("the decoder panicked")]
    Panic,
}

/// Time spent per stage for one or more samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub decode: Duration,
    pub augment: Duration,
}

/// The views of one sample: for each view slot, CHW uint8 images (4 of them with rotations).
#[derive(Debug, Clone, Default)]
pub struct SampleViews {
    pub views: Vec<Vec<u8>>,
}

/// Per-worker state: a decoder, a resizer and scratch buffers.
pub struct Augmenter {
    pub decoder: Box<dyn Decode>,
    resizer: Resizer,
    hwc: Vec<u8>,
    rot: Vec<u8>,
}

impl Augmenter {
    pub fn new(decoder: Box<dyn Decode>) -> Self {
        Augmenter { decoder, resizer: Resizer::new(), hwc: Vec::new(), rot: Vec::new() }
    }

    /// Runs `pipeline` on one record; randomness comes from (seed, epoch, index) only.
    pub fn process(&mut self, pipeline: &Pipeline, rec: &Record, seed: u64, epoch: u64, index: u64, times: &mut StageTimes) -> Result<SampleViews, SampleError> {
        let t0 = Instant::now();
        let (w, h) = self.decoder.probe(rec)?;
        let slots = pipeline.view_slots();
        // 1. Draw each view's crop on the full-size image, and its later random numbers.
        let mut plans = Vec::with_capacity(slots.len());
        let mut min_scale = 0f64;
        let mut region: Option<Rect> = None;
        for (n, &(k, _)) in slots.iter().enumerate() {
            let spec = &pipeline.views[k];
            let mut rng = Rng::for_stream(&[seed, epoch, index, n as u64]);
            let rect = match spec.geometry {
                Geometry::RandomResized { scale, ratio } => random_resized_crop_params(w, h, scale, ratio, &mut rng).rect(),
                Geometry::ResizeCenter { resize } => resize_center_crop_rect(w, h, resize, spec.size),
            };
            min_scale = min_scale.max(spec.size as f64 / rect.w).max(spec.size as f64 / rect.h);
            region = Some(region.map_or(rect, |r| r.union(&rect)));
            plans.push((k, rect, rng));
        }
        // 2. Decode once, as small as the views allow.
        let decoded = self.decoder.decode(rec, &DecodeRequest { min_scale, region })?;
        let t1 = Instant::now();
        times.decode += t1 - t0;
        // 3. Each view: resize, flip, colour, blur, rotations; out as CHW.
        let mut out = SampleViews { views: Vec::with_capacity(plans.len()) };
        for (k, rect, mut rng) in plans {
            let spec = &pipeline.views[k];
            let s = spec.size as usize;
            self.hwc.resize(s * s * 3, 0);
            resize_region(&mut self.resizer, &decoded.image, &decoded.map(&rect), spec.size, spec.size, &mut self.hwc)?;
            apply_pixel_ops(spec, &mut self.hwc, s, &mut rng);
            let mut chw = Vec::with_capacity(s * s * 3 * spec.images_per_view());
            if spec.rotations {
                self.rot.resize(s * s * 3, 0);
                for r in 0..4u8 {
                    rotate90(&self.hwc, s, r, &mut self.rot);
                    push_chw(&self.rot, &mut chw);
                }
            } else {
                push_chw(&self.hwc, &mut chw);
            }
            out.views.push(chw);
        }
        times.augment += t1.elapsed();
        Ok(out)
    }
}

/// Flip, colour jitter, grayscale and blur, in the spec's order, on an HWC image.
pub fn apply_pixel_ops(spec: &ViewSpec, px: &mut [u8], side: usize, rng: &mut dyn Draws) {
    if spec.flip > 0.0 && rng.unit() < spec.flip {
        hflip(px, side, side);
    }
    let gray = |rng: &mut dyn Draws, px: &mut [u8]| {
        if spec.gray > 0.0 && rng.unit() < spec.gray {
            grayscale(px);
        }
    };
    if spec.gray_first {
        gray(rng, px);
    }
    if let Some((cj, p)) = &spec.jitter {
        if rng.unit() < *p {
            cj.sample(rng).apply(px);
        }
    }
    if !spec.gray_first {
        gray(rng, px);
    }
    if let Some((p, (lo, hi))) = spec.blur {
        if rng.unit() < p {
            let sigma = rng.uniform(lo, hi) as f32;
            gaussian_blur(px, side, side, blur_kernel_for(side as u32), sigma);
        }
    }
}

/// Appends an HWC RGB image as CHW.
fn push_chw(hwc: &[u8], out: &mut Vec<u8>) {
    let n = hwc.len() / 3;
    let base = out.len();
    out.resize(base + hwc.len(), 0);
    let (r, rest) = out[base..].split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, p) in hwc.chunks_exact(3).enumerate() {
        r[i] = p[0];
        g[i] = p[1];
        b[i] = p[2];
    }
}
