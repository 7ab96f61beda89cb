//! SyncBatchNorm: in training mode, BatchNorm's mean and variance are taken over the batches of
//! all ranks instead of each rank's own, as `torch.nn.SyncBatchNorm` does (DeeperCluster trains
//! with it). Each rank's per-channel sum, sum of squares and count go through the autograd
//! all-gather (first the sums, then the squared deviations from the global mean), so the backward pass carries every rank's share of the gradient of the statistics
//! back to the ranks that produced them.
//!
//! The models' BatchNorm layers ([`crate::model`]) call [`batch_norm`]; whether it synchronises
//! is a process-wide switch ([`enable`]), set by the trainer for `--sync-bn` in data-parallel runs.

use super::error::DistError;
use super::group::ProcessGroup;
use std::cell::RefCell;
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
    // the models' BatchNorm settings (model::layers::bn2d): PyTorch's eps 1e-5, momentum 0.1
    synced(x, bn.ws.as_ref(), bn.bs.as_ref(), &bn.running_mean, &bn.running_var, train).unwrap_or_else(|| nn::ModuleT::forward_t(bn, x, train))
}

thread_local! {
    /// The first collective failure inside a forward pass (a layer cannot return an error):
    /// the trainer takes it after the forward with [`take_failure`] and ends the run with it.
    static FAILURE: RefCell<Option<DistError>> = const { RefCell::new(None) };
}

/// The collective error a SyncBatchNorm layer met since the last call, if any.
pub fn take_failure() -> Option<DistError> {
    FAILURE.with(|f| f.borrow_mut().take())
}

/// BatchNorm (eps 1e-5, momentum 0.1) with statistics over all ranks, when enabled and
/// `train`; None otherwise (the caller runs its ordinary BatchNorm). When a collective fails,
/// the error is kept for [`take_failure`] and the layers fall back to local statistics without
/// trying more collectives (each could wait out the timeout), so the forward pass ends quickly.
pub fn synced(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, running_mean: &Tensor, running_var: &Tensor, train: bool) -> Option<Tensor> {
    let g = group().filter(|_| train)?;
    if FAILURE.with(|f| f.borrow().is_some()) {
        return None;
    }
    match synced_in(x, weight, bias, running_mean, running_var, &g) {
        Ok(t) => Some(t),
        Err(e) => {
            FAILURE.with(|f| *f.borrow_mut() = Some(e));
            None
        }
    }
}

fn synced_in(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, running_mean: &Tensor, running_var: &Tensor, g: &ProcessGroup) -> super::Result<Tensor> {
    let (eps, m) = (1e-5, 0.1);
    let c = x.size()[1];
    let dims: Vec<i64> = std::iter::once(0).chain(2..x.dim() as i64).collect();
    let xf = x.to_kind(Kind::Float);
    let count = (x.numel() as i64 / c) as f64;
    let mut shape = vec![1i64; x.dim()];
    shape[1] = c;
    // Two passes, each through the autograd all-gather: the global mean, then the global sum of
    // squared deviations from it. (One pass with E[x²] − mean² loses the variance to
    // cancellation when the mean is large, and with it the gradient of biases before the norm.)
    let gather_sum = |local: Tensor| -> super::Result<Tensor> {
        let k = local.size()[0];
        Ok(g.all_gather_autograd(&local.to_device(tch::Device::Cpu))?.to_device(x.device()).reshape([g.size() as i64, k]).sum_dim_intlist(&[0i64][..], false, Kind::Float))
    };
    let first = gather_sum(Tensor::cat(&[xf.sum_dim_intlist(&dims[..], false, Kind::Float), Tensor::full([1], count, (Kind::Float, x.device()))], 0))?;
    let n = first.narrow(0, c, 1);
    let mean = first.narrow(0, 0, c) / &n;
    let centred = &xf - mean.reshape(&shape[..]);
    let var = gather_sum(centred.square().sum_dim_intlist(&dims[..], false, Kind::Float))? / &n;
    let mut y = centred * (var.reshape(&shape[..]) + eps).rsqrt();
    if let Some(w) = weight {
        y = y * w.reshape(&shape[..]);
    }
    if let Some(b) = bias {
        y = y + b.reshape(&shape[..]);
    }
    // running statistics as PyTorch keeps them: unbiased variance
    tch::no_grad(|| {
        let total = n.double_value(&[0]);
        let unbiased = var.detach() * (total / (total - 1.0).max(1.0));
        let _ = running_mean.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(mean.detach() * m));
        let _ = running_var.shallow_clone().g_mul_scalar_(1.0 - m).g_add_(&(unbiased * m));
    });
    Ok(y.to_kind(x.kind()))
}
