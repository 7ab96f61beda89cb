//! SyncBatchNorm: in training mode, BatchNorm's mean and variance are taken over the batches of
//! all ranks instead of each rank's own, as `torch.nn.SyncBatchNorm` does (DeeperCluster trains
//! with it). Each rank's per-channel sum, sum of squares and count go through the autograd
//! all-gather, so the backward pass carries every rank's share of the gradient of the statistics
//! back to the ranks that produced them.
//!
//! The models' BatchNorm layers ([`crate::model`]) call [`batch_norm`]; whether it synchronises
//! is a process-wide switch ([`enable`]), set by the trainer for `--sync-bn` in data-parallel runs.

use super::group::ProcessGroup;
use std::sync::{Arc, RwLock};
use tch::{nn, Kind, Tensor};

static GROUP: RwLock<Option<Arc<ProcessGroup>>> = RwLock::new(None);

/// Synchronise BatchNorm statistics over `group` from now on (None: each rank its own).
pub fn enable(group: Option<Arc<ProcessGroup>>) {
    if let Ok(mut g) = GROUP.write() {
        *g = group;
    }
}

fn group() -> Option<Arc<ProcessGroup>> {
    GROUP.read().ok().and_then(|g| g.clone())
}

/// BatchNorm over [N, C, ...] with `bn`'s affine parameters and running statistics; with
/// statistics over all ranks when enabled and training.
pub fn batch_norm(bn: &nn::BatchNorm, x: &Tensor, train: bool) -> Tensor {
    match group() {
        Some(g) if train => synced(bn, x, &g).unwrap_or_else(|e| panic!("SyncBatchNorm: {e}")),
        _ => nn::ModuleT::forward_t(bn, x, train),
    }
}

fn synced(bn: &nn::BatchNorm, x: &Tensor, g: &ProcessGroup) -> super::Result<Tensor> {
    let c = x.size()[1];
    let dims: Vec<i64> = std::iter::once(0).chain(2..x.dim() as i64).collect();
    let xf = x.to_kind(Kind::Float);
    let count = (x.numel() as i64 / c) as f64;
    let local = Tensor::cat(&[xf.sum_dim_intlist(&dims[..], false, Kind::Float), xf.square().sum_dim_intlist(&dims[..], false, Kind::Float), Tensor::full([1], count, (Kind::Float, x.device()))], 0);
    let all = g.all_gather_autograd(&local)?.reshape([g.size() as i64, 2 * c + 1]).sum_dim_intlist(&[0i64][..], false, Kind::Float);
    let n = all.narrow(0, 2 * c, 1);
    let mean = all.narrow(0, 0, c) / &n;
    let var = (all.narrow(0, c, c) / &n - mean.square()).clamp_min(0.0);
    // the models' BatchNorm settings (model::layers::bn2d): PyTorch's eps 1e-5, momentum 0.1
    let (eps, m) = (1e-5, 0.1);
    let mut shape = vec![1i64; x.dim()];
    shape[1] = c;
    let mut y = (&xf - mean.reshape(&shape[..])) * (var.reshape(&shape[..]) + eps).rsqrt();
    if let Some(w) = &bn.ws {
        y = y * w.reshape(&shape[..]);
    }
    if let Some(b) = &bn.bs {
        y = y + b.reshape(&shape[..]);
    }
    // running statistics as PyTorch keeps them: unbiased variance, momentum 0.1
    tch::no_grad(|| {
        let total = n.double_value(&[0]);
        let unbiased = var.detach() * (total / (total - 1.0).max(1.0));
        let _ = bn.running_mean.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(mean.detach() * m));
        let _ = bn.running_var.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(unbiased * m));
    });
    Ok(y.to_kind(x.kind()))
}
