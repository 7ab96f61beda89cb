//! SeLa's self-labelling step (Asano et al. 2020): find labels for N points over K clusters that
//! maximise agreement with the network's predictions P under an equipartition constraint, by
//! Sinkhorn-Knopp on P^λ.
//!
//! SeLa iterates in linear space in float64 (`r = (1/K) / (P c)`, `c = (1/N) / (Pᵀ r)`), which
//! underflows for confident predictions and λ = 25. Here the same fixed point is computed in
//! log space — `log r_k = −log K − logsumexp_i(λ log P_ik + log c_i)`, and likewise for c — so no
//! power of P is ever formed. The stopping rule is SeLa's: every 10 iterations (starting with
//! the first) the error Σ_i |c_i / c_new_i − 1| is measured, and the loop ends when it is at
//! most `tol` (SeLa: 0.1 on ImageNet, 0.01 on CIFAR). Labels are argmax_k of Q = diag(r) P^λ
//! diag(c) for each point. Everything runs on the device of the input tensor (GPU when present).

use super::error::{ClusterError, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct SinkhornConfig {
    /// Exponent on the probabilities (SeLa: 25 on ImageNet, 10 on CIFAR).
    pub lambda: f64,
    /// Stop when Σ|c/c_new − 1| <= tol, checked every 10 iterations.
    pub tol: f64,
    /// Hard cap on iterations (SeLa has none).
    pub max_iters: usize,
}

impl Default for SinkhornConfig {
    fn default() -> Self {
        SinkhornConfig { lambda: 25.0, tol: 0.1, max_iters: 10_000 }
    }
}

#[derive(Debug)]
pub struct SinkhornResult {
    /// Cluster of each of the N points.
    pub labels: Vec<i64>,
    /// log r (K) and log c (N) scaling vectors at convergence, f64.
    pub log_r: Tensor,
    pub log_c: Tensor,
    pub iterations: usize,
    /// The last measured error.
    pub error: f64,
}

/// Self-labels for one head from its logits (N × K; softmax is applied here, as in SeLa).
pub fn sela_labels(logits: &Tensor, cfg: &SinkhornConfig) -> Result<SinkhornResult> {
    let size = logits.size();
    if size.len() != 2 || size[0] == 0 || size[1] == 0 {
        return Err(ClusterError::Invalid(format!("Sinkhorn: logits must be N×K with N, K > 0, got {size:?}")));
    }
    let (n, k) = (size[0], size[1]);
    let log_p = logits.to_kind(Kind::Double).log_softmax(1, Kind::Double) * cfg.lambda;
    let log_p_t = log_p.tr().contiguous();
    let (ln_n, ln_k) = ((n as f64).ln(), (k as f64).ln());
    let mut log_c = Tensor::full([n], -ln_n, (Kind::Double, logits.device()));
    let mut log_r;
    let mut err = f64::INFINITY;
    let mut it = 0usize;
    loop {
        // r = (1/K) / (P c):  over points i for each cluster k.
        log_r = -(&log_p_t + log_c.unsqueeze(0)).logsumexp([1i64].as_slice(), false) - ln_k;
        // c_new = (1/N) / (Pᵀ r):  over clusters k for each point i.
        let log_c_new = -(&log_p + log_r.unsqueeze(0)).logsumexp([1i64].as_slice(), false) - ln_n;
        if it.is_multiple_of(10) {
            err = ((&log_c - &log_c_new).exp() - 1.0).abs().sum(Kind::Double).double_value(&[]);
        }
        log_c = log_c_new;
        it += 1;
        if err <= cfg.tol || it >= cfg.max_iters {
            break;
        }
    }
    if !err.is_finite() {
        return Err(ClusterError::Invalid("Sinkhorn diverged (non-finite scaling); are the logits finite?".into()));
    }
    // c_i is constant along k, so argmax_k Q_ik = argmax_k (λ log P_ik + log r_k).
    let labels = (&log_p + log_r.unsqueeze(0)).argmax(1, false).to_device(Device::Cpu);
    Ok(SinkhornResult { labels: Vec::<i64>::try_from(&labels)?, log_r, log_c, iterations: it, error: err })
}

/// Self-labels for several heads (SeLa trains e.g. 10 heads × 3000 clusters), one result each.
pub fn sela_labels_heads(logits: &[Tensor], cfg: &SinkhornConfig) -> Result<Vec<SinkhornResult>> {
    logits.iter().map(|l| sela_labels(l, cfg)).collect()
}
