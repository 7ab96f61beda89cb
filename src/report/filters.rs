//! Filter visualisation by gradient ascent on the input (DeepCluster `visu/gradient_ascent.py`,
//! methods.md §3.6): start from noise N(128, 20²) per pixel, step along the normalised gradient of
//! −CE(spatial mean activations of the layer as logits, target = the filter) − wd·‖x‖², blur a
//! little every few iterations, and show the result centred with std 0.1 around grey.
//!
//! One deviation: DeepCluster feeds the raw 0–255 noise image straight to a network trained on
//! normalised input. Here the noise is divided by 255 and normalised with the training mean/std
//! once, so the network starts from a grey noisy image on the scale it was trained on, and the
//! ascent variable is the network's input itself — the step (`lr`) and the weight decay act on
//! what the network sees, as they do in DeepCluster. (Ascending in pixel units instead, the
//! gradient reaching the pixels is 1/(255·std) ≈ 1/64 of DeepCluster's and the weight decay
//! dominates: measured, every filter's share fell.)

use super::ReportError;
use crate::model::Network;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct AscentConfig {
    /// Side of the square input (the network's crop).
    pub size: i64,
    /// DeepCluster: 1000 by default; its README uses 30,000 for conv1 (lr 3), 3,000 for conv5 (lr 30).
    pub iterations: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Blur with a Gaussian of `blur_sigma` pixels every this many iterations (DeepCluster 5, 0.3).
    pub blur_every: usize,
    pub blur_sigma: f64,
    pub seed: u64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// One synthesised image per filter.
#[derive(Debug, Clone)]
pub struct FilterImage {
    pub filter: i64,
    /// RGB bytes, row-major, `size`×`size`.
    pub rgb: Vec<u8>,
    /// The filter's share of the layer, softmax(mean activations)[filter], on the start image and
    /// at the end: the objective the ascent raises.
    pub start_share: f64,
    pub end_share: f64,
    /// All activations were 0 on the start image (a dead filter: only the weight decay moves it).
    pub dead: bool,
}

/// The images that most excite `filters` of the conv layer `layer` (index into
/// `Network::conv_outputs`). All filters ascend together as one batch (the network is in eval
/// mode, so the images do not interact; each gets its own normalised gradient).
pub fn filter_images(trunk: &dyn Network, layer: usize, filters: &[i64], cfg: &AscentConfig, device: Device) -> Result<Vec<FilterImage>, ReportError> {
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    tch::manual_seed((cfg.seed & i64::MAX as u64) as i64);
    let (s, n) = (cfg.size, filters.len() as i64);
    let noise = Tensor::randn([n, 3, s, s], (Kind::Float, device)) * 20.0 + 128.0;
    let mean = Tensor::from_slice(&cfg.mean).view([1, 3, 1, 1]).to_device(device);
    let std = Tensor::from_slice(&cfg.std).view([1, 3, 1, 1]).to_device(device);
    let mut x = ((noise / 255.0 - &mean) / &std).set_requires_grad(true);
    let target = Tensor::from_slice(filters).to_device(device);
    let kernel = gaussian_kernel(cfg.blur_sigma, device);
    // Mean activation of each image's own filter: [n, channels] gathered at the targets.
    let activations = |x: &Tensor| -> Result<Tensor, ReportError> {
        let outs = trunk.conv_outputs(x, false);
        let a = outs.get(layer).ok_or_else(|| ReportError::Invalid(format!("layer index {layer}: the network has {} conv outputs", outs.len())))?;
        let channels = a.size()[1];
        if let Some(f) = filters.iter().find(|&&f| f < 0 || f >= channels) {
            return Err(ReportError::Invalid(format!("filter {f}: the layer has {channels} filters")));
        }
        Ok(a.mean_dim([2i64, 3].as_slice(), false, Kind::Float))
    };
    let own = |logits: &Tensor| Vec::<f64>::try_from(logits.detach().gather(1, &target.view([-1, 1]), false).view([-1]).to_kind(Kind::Double)).unwrap_or_default();
    let share = |logits: &Tensor| own(&logits.softmax(1, Kind::Float));
    let start_logits = tch::no_grad(|| activations(&x))?;
    let (start, dead) = (share(&start_logits), own(&start_logits));
    for it in 0..cfg.iterations {
        x.zero_grad();
        let logits = activations(&x)?;
        // Summed over images: each image's gradient is that of its own objective.
        let ce = logits.cross_entropy_loss::<Tensor>(&target, None, tch::Reduction::Sum, -100, 0.0);
        let objective = -ce - cfg.weight_decay * x.square().sum(Kind::Float);
        objective.backward();
        tch::no_grad(|| {
            let g = x.grad();
            let norm = g.square().sum_dim_intlist([1i64, 2, 3].as_slice(), true, Kind::Float).sqrt() + 1e-8;
            let mut x = x.shallow_clone();
            let _ = x.g_add_(&(&g / norm * cfg.lr));
            if cfg.blur_every > 0 && (it + 1) % cfg.blur_every == 0 {
                if let Some(k) = &kernel {
                    let blurred = blur(&x, k);
                    x.copy_(&blurred);
                }
            }
        });
    }
    let end = tch::no_grad(|| activations(&x)).map(|l| share(&l))?;
    // Centre, std 0.1, around 0.5, clipped: DeepCluster's saved images.
    let img = tch::no_grad(|| {
        let x = x.detach() * &std + &mean;
        let c = &x - x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        let c = &c / (c.std_dim([1i64, 2, 3].as_slice(), true, true) + 1e-8) * 0.1 + 0.5;
        (c.clamp(0.0, 1.0) * 255.0).round().to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu)
    });
    filters
        .iter()
        .enumerate()
        .map(|(i, &filter)| {
            let rgb = Vec::<u8>::try_from(img.get(i as i64).view([-1])).map_err(|e| ReportError::Invalid(e.to_string()))?;
            let at = |v: &[f64]| v.get(i).copied().unwrap_or(0.0);
            Ok(FilterImage { filter, rgb, start_share: at(&start), end_share: at(&end), dead: at(&dead) == 0.0 })
        })
        .collect()
}

/// scipy.ndimage.gaussian_filter's kernel (radius = round(4σ)), as a depthwise [3, 1, k, k]
/// convolution; None when σ is too small for a kernel wider than one pixel.
fn gaussian_kernel(sigma: f64, device: Device) -> Option<Tensor> {
    let radius = (4.0 * sigma + 0.5) as i64;
    if sigma <= 0.0 || radius < 1 {
        return None;
    }
    let w: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let sum: f32 = w.iter().sum();
    let w = Tensor::from_slice(&w).to_device(device) / sum as f64;
    let k = w.outer(&w);
    let n = 2 * radius + 1;
    Some(k.view([1, 1, n, n]).repeat([3, 1, 1, 1]))
}

/// Blurs each channel of [1, 3, H, W] with reflected borders (scipy's default mode).
fn blur(x: &Tensor, kernel: &Tensor) -> Tensor {
    let r = kernel.size()[2] / 2;
    x.reflection_pad2d([r, r, r, r]).conv2d(kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_kernel_matches_scipy_for_sigma_0_3() {
        // scipy.ndimage.gaussian_filter1d weights for sigma 0.3: radius 1, [0.00383, 0.99234, 0.00383].
        let k = gaussian_kernel(0.3, Device::Cpu).unwrap();
        assert_eq!(k.size(), vec![3, 1, 3, 3]);
        let centre = k.double_value(&[0, 0, 1, 1]);
        let edge = k.double_value(&[0, 0, 1, 0]);
        assert!((centre - 0.992_34f64.powi(2)).abs() < 1e-4, "{centre}");
        assert!((edge - 0.992_34 * 0.003_83).abs() < 1e-4, "{edge}");
        assert!((k.get(0).sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn blur_keeps_a_constant_image() {
        let k = gaussian_kernel(1.0, Device::Cpu).unwrap();
        let x = Tensor::full([1, 3, 8, 8], 7.0, (Kind::Float, Device::Cpu));
        let y = blur(&x, &k);
        assert_eq!(y.size(), vec![1, 3, 8, 8]);
        assert!((y - 7.0).abs().max().double_value(&[]) < 1e-5);
    }
}
