//! Views and the per-sample pipeline: decode once, then cut every view (multi-crop) from it.
//!
//! A [`Pipeline`] is a list of [`ViewSpec`]s, each `count` views of one size with its own crop
//! rule and colour ops (SwAV's 2x224 + 6x96, PIC's 160 + 3x96, ...). For one sample all view
//! crops are drawn first (on the full-size image), then the record is decoded once at the
//! smallest DCT scale that still covers every crop at its output size, restricted to the union
//! of the crops, and each view is resized out of that.

use super::augment::{
    blur_kernel_for, gaussian_blur, grayscale, hflip, random_resized_crop_params, resize_center_crop_rect, resize_region, rotate90, AugmentError,
    ColorJitter, JitterParams,
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
        // 1. Draw every view's crop and pixel ops on the full-size image.
        let plan = plan_sample(pipeline, w, h, seed, epoch, index);
        // 2. Decode once, as small as the views allow.
        let decoded = self.decoder.decode(rec, &plan.decode_request())?;
        let t1 = Instant::now();
        times.decode += t1 - t0;
        // 3. Each view: resize, flip, colour, blur, rotations; out as CHW.
        let mut out = SampleViews { views: Vec::with_capacity(plan.views.len()) };
        for view in &plan.views {
            let spec = &pipeline.views[view.spec];
            let s = spec.size as usize;
            self.hwc.resize(s * s * 3, 0);
            resize_region(&mut self.resizer, &decoded.image, &decoded.map(&view.rect), spec.size, spec.size, &mut self.hwc)?;
            view.ops.apply(&mut self.hwc, s);
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

/// Everything random about one view of one sample, drawn before any pixel is touched, so the
/// CPU path ([`Augmenter`]) and the batched tensor path (`loader::gpu`) apply the same draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewPlan {
    /// Index into `Pipeline::views`.
    pub spec: usize,
    /// The crop, in full-size pixel coordinates.
    pub rect: Rect,
    pub ops: PixelOps,
}

/// The plans of all view slots of one sample, in output order.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePlan {
    pub views: Vec<ViewPlan>,
    /// Largest output-size / crop-size ratio over the views (how small the decode may be).
    pub min_scale: f64,
    /// Union of the crops.
    pub region: Option<Rect>,
}

impl SamplePlan {
    /// The smallest decode that still covers every crop at its output size.
    pub fn decode_request(&self) -> DecodeRequest {
        DecodeRequest { min_scale: self.min_scale, region: self.region }
    }
}

/// Draws the crops and pixel ops of every view slot of a `w` x `h` image; view slot n uses the
/// stream (seed, epoch, index, n).
pub fn plan_sample(pipeline: &Pipeline, w: u32, h: u32, seed: u64, epoch: u64, index: u64) -> SamplePlan {
    let slots = pipeline.view_slots();
    let mut views = Vec::with_capacity(slots.len());
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
        views.push(ViewPlan { spec: k, rect, ops: PixelOps::draw(spec, &mut rng) });
    }
    SamplePlan { views, min_scale, region }
}

/// One view's flip, grayscale, colour jitter and blur draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelOps {
    pub flip: bool,
    /// Grayscale, and whether it comes before the jitter (InstDisc / MoCo v1).
    pub gray: bool,
    pub gray_first: bool,
    pub jitter: Option<JitterParams>,
    /// Blur sigma and kernel size.
    pub blur: Option<(f32, usize)>,
}

impl PixelOps {
    /// Draws the ops of `spec` in torchvision's order (flip, [gray], jitter, [gray], blur).
    pub fn draw(spec: &ViewSpec, rng: &mut dyn Draws) -> Self {
        let flip = spec.flip > 0.0 && rng.unit() < spec.flip;
        let mut gray = false;
        if spec.gray_first {
            gray = spec.gray > 0.0 && rng.unit() < spec.gray;
        }
        let mut jitter = None;
        if let Some((cj, p)) = &spec.jitter {
            if rng.unit() < *p {
                jitter = Some(cj.sample(rng));
            }
        }
        if !spec.gray_first {
            gray = spec.gray > 0.0 && rng.unit() < spec.gray;
        }
        let mut blur = None;
        if let Some((p, (lo, hi))) = spec.blur {
            if rng.unit() < p {
                blur = Some((rng.uniform(lo, hi) as f32, blur_kernel_for(spec.size)));
            }
        }
        PixelOps { flip, gray, gray_first: spec.gray_first, jitter, blur }
    }

    /// Applies the ops to a `side` x `side` HWC image.
    pub fn apply(&self, px: &mut [u8], side: usize) {
        if self.flip {
            hflip(px, side, side);
        }
        if self.gray && self.gray_first {
            grayscale(px);
        }
        if let Some(j) = &self.jitter {
            j.apply(px);
        }
        if self.gray && !self.gray_first {
            grayscale(px);
        }
        if let Some((sigma, k)) = self.blur {
            gaussian_blur(px, side, side, k, sigma);
        }
    }
}

/// Flip, colour jitter, grayscale and blur, in the spec's order, on an HWC image.
pub fn apply_pixel_ops(spec: &ViewSpec, px: &mut [u8], side: usize, rng: &mut dyn Draws) {
    PixelOps::draw(spec, rng).apply(px, side);
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
