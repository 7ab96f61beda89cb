//! Linear probes on frozen, precomputed features (methods reference §3.1).
//!
//! One `Linear(D, classes)` layer, weight ~ N(0, 0.01²) and bias 0 (MoCo `main_lincls.py`, DC
//! `eval_linear.py`), trained with cross-entropy and SGD exactly as `torch.optim.SGD` updates
//! (momentum 0.9, dampening 0, weight decay added to the gradient of every parameter, bias
//! included; the momentum buffer starts as the first gradient):
//!
//! ```text
//! g ← ∇loss + wd·p;  v ← g (first step) or μ·v + g;  p ← p − lr_t·v
//! ```
//!
//! The learning rate follows a [`Schedule`] per iteration t (counted from 0 over all epochs):
//! Bottou `lr_t = lr0 / √(1 + lr0·wd·t)` (DC, DRC), cosine `lr_t = lr0·½(1 + cos(π·t/T))`
//! (SwAV-style, T = total iterations) or constant. Each epoch visits the training rows in a
//! fresh seeded permutation ([`epoch_order`]) in minibatches of `batch_size` (the last one may
//! be smaller). Features can first be standardised (BatchNorm(affine=False) with the training
//! set's statistics) or passed through a BatchNorm(affine=False) that uses batch statistics
//! while training and running statistics for testing (SeLa, RotNet probes).
//!
//! [`pool_below`] implements the seed rule "average-pool until the dimension is below 10k"
//! that the DC/DRC probes of convolutional layers follow.

use super::{check_labels, matrix_dims, topk_hits, EvalError, Result};
use crate::loader::rng::{seed_of, Rng};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Learning-rate schedule of a linear probe, evaluated per iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Schedule {
    /// lr_t = lr0.
    Constant,
    /// lr_t = lr0 / √(1 + lr0·wd·t) (Bottou; DeepCluster and DeeperCluster probes).
    Bottou,
    /// lr_t = lr0·½(1 + cos(π·t/T)), T = epochs × iterations per epoch, down to 0.
    Cosine,
}

impl Schedule {
    /// Learning rate at iteration `t` of `total` (0-based).
    pub fn lr(self, lr0: f64, weight_decay: f64, t: usize, total: usize) -> f64 {
        match self {
            Schedule::Constant => lr0,
            Schedule::Bottou => lr0 / (1.0 + lr0 * weight_decay * t as f64).sqrt(),
            Schedule::Cosine => lr0 * 0.5 * (1.0 + (std::f64::consts::PI * t as f64 / total.max(1) as f64).cos()),
        }
    }
}

/// Normalisation applied to the frozen features before the linear layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FeatureNorm {
    /// Features as given.
    None,
    /// (x − μ) / √(σ² + 1e-5) with the mean and biased variance of the training features, used
    /// for both sets: BatchNorm(affine=False) with exact population statistics.
    Standardize,
    /// BatchNorm1d(affine=False), eps 1e-5, momentum 0.1: batch statistics while training,
    /// running statistics (initial mean 0, variance 1) for the test set.
    BatchNorm,
}

/// Parameters of [`linear_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinearProbeConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Initial learning rate lr0.
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub schedule: Schedule,
    /// Seeds the weight initialisation and the per-epoch shuffles.
    pub seed: u64,
    pub norm: FeatureNorm,
}

impl Default for LinearProbeConfig {
    /// DeeperCluster-like: 100 epochs, batch 256, lr 0.01, wd 1e-5, momentum 0.9, Bottou decay.
    fn default() -> Self {
        LinearProbeConfig {
            epochs: 100,
            batch_size: 256,
            lr: 0.01,
            weight_decay: 1e-5,
            momentum: 0.9,
            schedule: Schedule::Bottou,
            seed: 0,
            norm: FeatureNorm::None,
        }
    }
}

/// Outcome of [`linear_probe`].
#[derive(Debug)]
pub struct LinearProbeResult {
    /// Mean training cross-entropy of each epoch (weighted by batch size), with the weights as
    /// they were when each batch was seen.
    pub epoch_loss: Vec<f64>,
    /// Learning rate of the last iteration of each epoch.
    pub epoch_lr: Vec<f64>,
    /// Accuracy of the final classifier on the training features.
    pub train_top1: f64,
    /// Test accuracies of the final classifier, in [0, 1].
    pub top1: f64,
    pub top5: f64,
    /// Predicted class of every test row.
    pub predictions: Vec<i64>,
    /// Final parameters: weight `[classes, D]`, bias `[classes]` (float32, CPU).
    pub weight: Tensor,
    pub bias: Tensor,
}

/// The initial weight of the probe, `[classes × dim]` row-major, N(0, 0.01²), drawn from the
/// seeded xoshiro stream `(seed, "init")` with Box-Muller. Public so that tests can hand the same
/// start to PyTorch.
pub fn init_weights(dim: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::for_stream(&[seed, 0x1417]);
    let count = dim * classes;
    let mut out = Vec::with_capacity(count + 1);
    while out.len() < count {
        let u1 = 1.0 - rng.uniform(); // (0, 1]
        let u2 = rng.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((0.01 * r * a.cos()) as f32);
        out.push((0.01 * r * a.sin()) as f32);
    }
    out.truncate(count);
    out
}

/// The order in which epoch `epoch` visits `n` training rows: a Fisher-Yates permutation from
/// the seeded stream `(seed, "order", epoch)`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let mut order: Vec<i64> = (0..n as i64).collect();
    Rng::new(seed_of(&[seed, 0x0_5DE5, epoch as u64])).shuffle(&mut order);
    order
}

/// Kernel (= stride) of the average pooling that [`pool_below`] applies to a `C×H×W` map: the
/// smallest k ≥ 1 with C·⌊H/k⌋·⌊W/k⌋ < `max_dim`, or `None` when even k = min(H, W) does not get
/// below (then [`pool_below`] pools globally to C features).
fn pool_plan(c: usize, h: usize, w: usize, max_dim: usize) -> Option<usize> {
    (1..=h.min(w)).find(|&k| c * (h / k) * (w / k) < max_dim)
}

/// Kernel (= stride) of the average pooling that [`pool_below`] applies to a `C×H×W` map: the
/// smallest k ≥ 1 with C·⌊H/k⌋·⌊W/k⌋ < `max_dim`; `max(H, W)` (a global pool, C features) when
/// no kernel gets below. With `max_dim` = 10,000 DeeperCluster's VGG16 probe dimensions come
/// out of this rule: conv1 64×224² → k 18 (9216), conv3 128×112² → k 13 (8192; DRC pools with 14,
/// same size), conv5 256×56² → k 9 (9216), conv8 512×28² → k 6 (8192), conv11 512×14² → k 3
/// (8192); AlexNet conv2 256×27² → k 4 (9216, as DeepCluster). AlexNet conv1 96×55² → k 6 (7776;
/// DeepCluster pads by 3 to get 9600).
pub fn pool_kernel(c: usize, h: usize, w: usize, max_dim: usize) -> usize {
    pool_plan(c, h, w, max_dim).unwrap_or(h.max(w).max(1))
}

/// Average-pools an `[N, C, H, W]` activation with kernel = stride = [`pool_kernel`]`(C, H, W,
/// max_dim)` (no padding, floor mode) and flattens it to `[N, C·⌊H/k⌋·⌊W/k⌋]`: the probe input
/// of the seed rule "average-pool until the dimension is below 10k" (`max_dim` = 10,000). When no
/// kernel gets below `max_dim` the result is the global average, `[N, C]`. A 2-D input is
/// returned as is (already flat); any other rank above 2 is flattened from dimension 1.
pub fn pool_below(x: &Tensor /* N,C,H,W */, max_dim: usize) -> Tensor {
    let s = x.size();
    match s.len() {
        4 => {
            let (c, h, w) = (s[1] as usize, s[2] as usize, s[3] as usize);
            let pooled = match pool_plan(c, h, w, max_dim) {
                Some(1) => x.shallow_clone(),
                Some(k) => {
                    let k = k as i64;
                    x.avg_pool2d([k, k], [k, k], [0, 0], false, true, None::<i64>)
                }
                None => x.adaptive_avg_pool2d([1, 1]),
            };
            pooled.flatten(1, -1)
        }
        r if r > 2 => x.flatten(1, -1),
        _ => x.shallow_clone(),
    }
}

/// Running state of the BatchNorm(affine=False) variant.
struct RunningNorm {
    mean: Tensor,
    var: Tensor,
}

const BN_EPS: f64 = 1e-5;

fn standardize(x: &Tensor, mean: &Tensor, var: &Tensor) -> Result<Tensor> {
    Ok(x.f_sub(mean)?.f_div(&var.f_add_scalar(BN_EPS)?.f_sqrt()?)?)
}

/// Trains a linear classifier on frozen `train` features and reports its accuracy on `test`
/// (see the module docs). Runs on the device of `train`, in float32.
pub fn linear_probe(
    train: &Tensor,
    train_labels: &[i64],
    test: &Tensor,
    test_labels: &[i64],
    num_classes: usize,
    cfg: &LinearProbeConfig,
) -> std::result::Result<LinearProbeResult, EvalError> {
    let (n, d) = matrix_dims(train, "train features")?;
    let (m, dt) = matrix_dims(test, "test features")?;
    if d != dt {
        return Err(EvalError::Shape(format!("train features have {d} dimensions, test features {dt}")));
    }
    if n == 0 || d == 0 {
        return Err(EvalError::Shape(format!("empty training features [{n}, {d}]")));
    }
    if num_classes == 0 {
        return Err(EvalError::Config("num_classes must be at least 1".into()));
    }
    check_labels(train_labels, n, num_classes, "train")?;
    check_labels(test_labels, m, num_classes, "test")?;
    if cfg.batch_size == 0 {
        return Err(EvalError::Config("batch_size must be at least 1".into()));
    }
    if !(cfg.lr.is_finite() && cfg.lr >= 0.0 && cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
        return Err(EvalError::Config(format!("lr {} and weight decay {} must be finite and >= 0", cfg.lr, cfg.weight_decay)));
    }
    if !(0.0..1.0).contains(&cfg.momentum) {
        return Err(EvalError::Config(format!("momentum must be in [0, 1), got {}", cfg.momentum)));
    }

    let device = train.device();
    let c = num_classes as i64;
    let mut x = tch::no_grad(|| train.f_to_kind(Kind::Float))?;
    let mut xt = tch::no_grad(|| test.f_to_device(device)?.f_to_kind(Kind::Float))?;
    let y = Tensor::from_slice(train_labels).f_to_device(device)?;
    let yt = Tensor::from_slice(test_labels).f_to_device(device)?;

    let mut running = None;
    match cfg.norm {
        FeatureNorm::None => {}
        FeatureNorm::Standardize => {
            let (nx, nxt) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                let mean = x.f_mean_dim(&[0i64][..], true, Kind::Float)?;
                let var = x.f_var_dim(&[0i64][..], false, true)?;
                Ok((standardize(&x, &mean, &var)?, standardize(&xt, &mean, &var)?))
            })?;
            x = nx;
            xt = nxt;
        }
        FeatureNorm::BatchNorm => {
            running = Some(RunningNorm {
                mean: Tensor::f_zeros([1, d as i64], (Kind::Float, device))?,
                var: Tensor::f_ones([1, d as i64], (Kind::Float, device))?,
            });
        }
    }

    let w0 = Tensor::from_slice(&init_weights(d, num_classes, cfg.seed)).f_reshape([c, d as i64])?;
    let mut weight = w0.f_to_device(device)?.set_requires_grad(true);
    let mut bias = Tensor::f_zeros([c], (Kind::Float, device))?.set_requires_grad(true);
    let mut buf_w: Option<Tensor> = None;
    let mut buf_b: Option<Tensor> = None;

    let per_epoch = n.div_ceil(cfg.batch_size);
    let total = per_epoch * cfg.epochs;
    let mut t = 0usize;
    let mut epoch_loss = Vec::with_capacity(cfg.epochs);
    let mut epoch_lr = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let order = Tensor::from_slice(&epoch_order(n, cfg.seed, epoch)).f_to_device(device)?;
        let mut loss_sum = Tensor::f_zeros([], (Kind::Double, device))?;
        let mut lr = cfg.lr;
        for b in 0..per_epoch {
            let start = b * cfg.batch_size;
            let rows = cfg.batch_size.min(n - start) as i64;
            let idx = order.f_narrow(0, start as i64, rows)?;
            let mut xb = x.f_index_select(0, &idx)?;
            let yb = y.f_index_select(0, &idx)?;
            if let Some(r) = running.as_mut() {
                let (nb, mean, var) = tch::no_grad(|| -> Result<(Tensor, Tensor, Tensor)> {
                    let mean = xb.f_mean_dim(&[0i64][..], true, Kind::Float)?;
                    let var = xb.f_var_dim(&[0i64][..], false, true)?;
                    Ok((standardize(&xb, &mean, &var)?, mean, var))
                })?;
                tch::no_grad(|| -> Result<()> {
                    let unbiased = if rows > 1 { var.f_mul_scalar(rows as f64 / (rows - 1) as f64)? } else { var.shallow_clone() };
                    r.mean = r.mean.f_mul_scalar(0.9)?.f_add(&mean.f_mul_scalar(0.1)?)?;
                    r.var = r.var.f_mul_scalar(0.9)?.f_add(&unbiased.f_mul_scalar(0.1)?)?;
                    Ok(())
                })?;
                xb = nb;
            }
            let logits = xb.f_matmul(&weight.f_transpose(0, 1)?)?.f_add(&bias)?;
            let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss::<Tensor>(&yb, None, tch::Reduction::Mean, -100)?;
            weight.zero_grad();
            bias.zero_grad();
            loss.f_backward()?;
            lr = cfg.schedule.lr(cfg.lr, cfg.weight_decay, t, total);
            tch::no_grad(|| -> Result<()> {
                loss_sum = loss_sum.f_add(&loss.f_detach()?.f_to_kind(Kind::Double)?.f_mul_scalar(rows as f64)?)?;
                sgd_update(&mut weight, &mut buf_w, cfg, lr)?;
                sgd_update(&mut bias, &mut buf_b, cfg, lr)?;
                Ok(())
            })?;
            t += 1;
        }
        let mean_loss = loss_sum.f_double_value(&[])? / n as f64;
        if !mean_loss.is_finite() {
            return Err(EvalError::Diverged(format!("epoch {epoch}: mean training loss {mean_loss} (lr {} too high?)", cfg.lr)));
        }
        tracing::debug!(epoch, loss = mean_loss, lr, "linear probe epoch");
        epoch_loss.push(mean_loss);
        epoch_lr.push(lr);
    }

    let _guard = tch::no_grad_guard();
    if let Some(r) = &running {
        x = standardize(&x, &r.mean, &r.var)?;
        xt = standardize(&xt, &r.mean, &r.var)?;
    }
    let weight = weight.f_detach()?;
    let bias = bias.f_detach()?;
    let (train_hits, _, _) = classify(&x, &y, &weight, &bias)?;
    let (top1, top5, predictions) = if m == 0 { (0, 0, Vec::new()) } else { classify(&xt, &yt, &weight, &bias)? };
    let denom = m.max(1) as f64;
    Ok(LinearProbeResult {
        epoch_loss,
        epoch_lr,
        train_top1: train_hits as f64 / n as f64,
        top1: top1 as f64 / denom,
        top5: top5 as f64 / denom,
        predictions,
        weight: weight.f_to_device(Device::Cpu)?,
        bias: bias.f_to_device(Device::Cpu)?,
    })
}

/// One `torch.optim.SGD` step for one parameter (dampening 0, no Nesterov).
fn sgd_update(p: &mut Tensor, buf: &mut Option<Tensor>, cfg: &LinearProbeConfig, lr: f64) -> Result<()> {
    let mut g = p.f_grad()?;
    if cfg.weight_decay != 0.0 {
        g = g.f_add(&p.f_mul_scalar(cfg.weight_decay)?)?;
    }
    if cfg.momentum != 0.0 {
        let v = match buf.take() {
            None => g.f_detach()?.copy(),
            Some(v) => v.f_mul_scalar(cfg.momentum)?.f_add(&g)?,
        };
        g = v.shallow_clone();
        *buf = Some(v);
    }
    let _ = p.f_sub_(&g.f_mul_scalar(lr)?)?;
    Ok(())
}

/// Top-1 / top-5 hits and predictions of the linear classifier, 4096 rows at a time.
fn classify(x: &Tensor, y: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<(i64, i64, Vec<i64>)> {
    let n = x.size()[0];
    let wt = weight.f_transpose(0, 1)?;
    let (mut h1, mut h5, mut pred) = (0, 0, Vec::with_capacity(n as usize));
    let mut start = 0;
    while start < n {
        let rows = 4096.min(n - start);
        let logits = x.f_narrow(0, start, rows)?.f_matmul(&wt)?.f_add(bias)?;
        let (a, b, p) = topk_hits(&logits, &y.f_narrow(0, start, rows)?)?;
        h1 += a;
        h5 += b;
        pred.extend(p);
        start += rows;
    }
    Ok((h1, h5, pred))
}
