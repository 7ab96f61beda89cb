//! Evaluation of learned features on labelled data (methods reference §3.1, §3.2):
//!
//! - [`knn`]: the weighted k-nearest-neighbour classifier of InstDisc and MoCo — cosine
//!   similarities to every training feature, top k = 200 neighbours, each voting for its class
//!   with weight exp(sim / T), T = 0.07; top-1 and top-5 accuracy.
//! - [`linear`]: linear probes on frozen, precomputed features (one `Linear(D, classes)` trained
//!   with momentum SGD, Bottou or cosine learning-rate schedules), and [`pool_below`], the
//!   "average-pool until the dimension is below 10k" rule used to probe convolutional layers.
//!
//! Both take features as `tch` tensors `[N, D]` (any floating kind, any device: the work runs on
//! the device of the training features, in float32) and labels as `&[i64]` in
//! `0..num_classes`. Inputs are validated up front and every problem is an [`EvalError`].

pub mod knn;
pub mod linear;

pub use knn::{knn_eval, KnnConfig, KnnResult};
pub use linear::{
    epoch_order, init_weights, linear_probe, pool_below, pool_kernel, FeatureNorm, LinearProbeConfig,
    LinearProbeResult, Schedule,
};

/// Everything that can go wrong in an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A tensor has the wrong rank or its sizes disagree with another input.
    #[error("shape: {0}")]
    Shape(String),
    /// Labels: wrong count, or a value outside `0..num_classes`.
    #[error("labels: {0}")]
    Labels(String),
    /// A configuration value that cannot work (k = 0, temperature <= 0, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// Training diverged (the loss became NaN or infinite).
    #[error("diverged: {0}")]
    Diverged(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, EvalError>;

/// Checks that `x` is `[n, d]` and returns `(n, d)`.
pub(crate) fn matrix_dims(x: &tch::Tensor, what: &str) -> Result<(usize, usize)> {
    let s = x.size();
    if s.len() != 2 {
        return Err(EvalError::Shape(format!("{what}: expected an N×D matrix, found shape {s:?}")));
    }
    if !x.is_floating_point() {
        return Err(EvalError::Shape(format!("{what}: expected floating-point features, found {:?}", x.kind())));
    }
    Ok((s[0] as usize, s[1] as usize))
}

/// Checks a label slice against its feature rows and the class count.
pub(crate) fn check_labels(labels: &[i64], rows: usize, num_classes: usize, what: &str) -> Result<()> {
    if labels.len() != rows {
        return Err(EvalError::Labels(format!("{what}: {} labels for {rows} feature rows", labels.len())));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= num_classes) {
        return Err(EvalError::Labels(format!("{what}: label {l} at row {i} is outside 0..{num_classes}")));
    }
    Ok(())
}

/// Top-1 / top-5 accuracy from class scores `[m, C]` and targets `[m]` (int64, same device):
/// returns (top-1 hits, top-5 hits, argmax predictions).
pub(crate) fn topk_hits(scores: &tch::Tensor, targets: &tch::Tensor) -> Result<(i64, i64, Vec<i64>)> {
    let classes = scores.size()[1];
    let (_, idx) = scores.f_topk(classes.min(5), 1, true, true)?;
    let hit = idx.f_eq_tensor(&targets.f_unsqueeze(1)?)?;
    let top1 = hit.f_narrow(1, 0, 1)?.f_sum(tch::Kind::Int64)?.int64_value(&[]);
    let top5 = hit.f_any_dim(1, false)?.f_sum(tch::Kind::Int64)?.int64_value(&[]);
    let pred = Vec::<i64>::try_from(idx.f_select(1, 0)?.f_to_device(tch::Device::Cpu)?)?;
    Ok((top1, top5, pred))
}
