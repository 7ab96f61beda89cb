//! Weighted kNN classifier on L2-normalised features, as InstDisc (`test.py` `kNN`) and the MoCo
//! CIFAR demo (`knn_predict`) evaluate representations:
//!
//! ```text
//! f ← f / ‖f‖ for train and test features
//! sim = f_test · F_trainᵀ                       (computed for `chunk` test rows at a time)
//! (s, j) = top-k of each row of sim            (k = 200)
//! w = exp(s / T)                               (T = 0.07; MoCo demo and lightly use 0.1)
//! score_c = Σ_{neighbours j with label c} w    predict argmax_c score_c; top-5 = 5 best classes
//! ```
//!
//! Memory is bounded by the chunk: `chunk × N_train` float32 similarities at a time, plus the
//! normalised copies of both feature sets.

use super::{check_labels, matrix_dims, topk_hits, EvalError, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

/// Parameters of [`knn_eval`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KnnConfig {
    /// Neighbours that vote (InstDisc, MoCo demo, lightly: 200; solo-learn: 20). Capped at the
    /// number of training rows.
    pub k: usize,
    /// Temperature T of the vote weights exp(sim / T) (InstDisc 0.07; MoCo demo 0.1).
    pub temperature: f64,
    /// Test rows per similarity block (memory: chunk × N_train × 4 bytes).
    pub chunk: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        KnnConfig { k: 200, temperature: 0.07, chunk: 256 }
    }
}

/// Outcome of [`knn_eval`]: accuracies in [0, 1] and the predicted class of every test row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnnResult {
    pub top1: f64,
    pub top5: f64,
    pub predictions: Vec<i64>,
}

/// Row-wise L2 normalisation as `torch.nn.functional.normalize` (eps 1e-12), in float32.
pub(crate) fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let x = x.f_to_kind(Kind::Float)?;
    let norm = x.f_norm_scalaropt_dim(2, [1i64], true)?.f_clamp_min(1e-12)?;
    Ok(x.f_div(&norm)?)
}

/// Weighted kNN accuracy of `test` features against `train` features (see the module docs).
/// Runs on the device of `train`; `test` is moved there. Both are L2-normalised here.
pub fn knn_eval(
    train: &Tensor,
    train_labels: &[i64],
    test: &Tensor,
    test_labels: &[i64],
    num_classes: usize,
    cfg: &KnnConfig,
) -> std::result::Result<KnnResult, EvalError> {
    let (n, d) = matrix_dims(train, "train features")?;
    let (m, dt) = matrix_dims(test, "test features")?;
    if d != dt {
        return Err(EvalError::Shape(format!("train features have {d} dimensions, test features {dt}")));
    }
    if n == 0 {
        return Err(EvalError::Shape("no training features".into()));
    }
    if num_classes == 0 {
        return Err(EvalError::Config("num_classes must be at least 1".into()));
    }
    check_labels(train_labels, n, num_classes, "train")?;
    check_labels(test_labels, m, num_classes, "test")?;
    if cfg.k == 0 {
        return Err(EvalError::Config("k must be at least 1".into()));
    }
    if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
        return Err(EvalError::Config(format!("temperature must be positive, got {}", cfg.temperature)));
    }
    if cfg.chunk == 0 {
        return Err(EvalError::Config("chunk must be at least 1".into()));
    }
    if m == 0 {
        return Ok(KnnResult { top1: 0.0, top5: 0.0, predictions: Vec::new() });
    }

    let _guard = tch::no_grad_guard();
    let device = train.device();
    let k = cfg.k.min(n) as i64;
    let train_n = l2_normalize(train)?;
    let train_t = train_n.f_transpose(0, 1)?.f_contiguous()?;
    drop(train_n);
    let test_n = l2_normalize(&test.f_to_device(device)?)?;
    let ytrain = Tensor::from_slice(train_labels).f_to_device(device)?;
    let ytest = Tensor::from_slice(test_labels).f_to_device(device)?;

    let (mut top1, mut top5) = (0i64, 0i64);
    let mut predictions = Vec::with_capacity(m);
    let mut start = 0usize;
    while start < m {
        let rows = cfg.chunk.min(m - start) as i64;
        let q = test_n.f_narrow(0, start as i64, rows)?;
        let sim = q.f_mm(&train_t)?;
        let (s, j) = sim.f_topk(k, 1, true, true)?;
        drop(sim);
        let neighbour_labels = ytrain.f_index_select(0, &j.f_reshape([-1])?)?.f_reshape([rows, k])?;
        let w = s.f_div_scalar(cfg.temperature)?.f_exp()?;
        let scores = Tensor::f_zeros([rows, num_classes as i64], (Kind::Float, device))?
            .f_scatter_add(1, &neighbour_labels, &w)?;
        let (h1, h5, pred) = topk_hits(&scores, &ytest.f_narrow(0, start as i64, rows)?)?;
        top1 += h1;
        top5 += h5;
        predictions.extend(pred);
        start += rows as usize;
    }
    Ok(KnnResult { top1: top1 as f64 / m as f64, top5: top5 as f64 / m as f64, predictions })
}
