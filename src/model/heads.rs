//! Classification / projection heads that methods put on top of a trunk. They live in their own
//! VarStores (or sub-paths) so a method can re-create or re-initialise them without touching the
//! trunk (DeepCluster re-creates its `top_layer` every epoch).

use tch::nn;
use tch::Tensor;

/// How a head's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadInit {
    /// DeepCluster's top layer: weight N(0, 0.01), bias 0.
    Normal001,
    /// PyTorch's `nn.Linear` default: weight kaiming_uniform(a = sqrt(5)), i.e.
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    TorchDefault,
}

impl HeadInit {
    /// (weight init, bias init) for a layer with `in_dim` inputs.
    pub fn inits(self, in_dim: i64) -> (nn::Init, nn::Init) {
        match self {
            HeadInit::Normal001 => (nn::Init::Randn { mean: 0.0, stdev: 0.01 }, nn::Init::Const(0.0)),
            HeadInit::TorchDefault => {
                let b = 1.0 / (in_dim.max(1) as f64).sqrt();
                (nn::Init::Uniform { lo: -b, up: b }, nn::Init::Uniform { lo: -b, up: b })
            }
        }
    }
}

/// A Linear `in_dim -> out_dim` with bias, parameters `{p}.weight` [out, in] and `{p}.bias`.
pub fn linear_head(p: &nn::Path, in_dim: i64, out_dim: i64, init: HeadInit) -> nn::Linear {
    let (ws_init, bs_init) = init.inits(in_dim);
    nn::linear(p, in_dim, out_dim, nn::LinearConfig { ws_init, bs_init: Some(bs_init), bias: true })
}

/// Re-draws a Linear's parameters in place (same tensors, so an optimiser holding them keeps
/// working; its per-parameter state, e.g. momentum, is the caller's to reset).
pub fn reset_linear(lin: &mut nn::Linear, init: HeadInit) {
    let size = lin.ws.size();
    let (ws_init, bs_init) = init.inits(size[1]);
    let (kind, device) = (lin.ws.kind(), lin.ws.device());
    tch::no_grad(|| {
        let w = nn::init(ws_init, &size, device).to_kind(kind);
        lin.ws.copy_(&w);
        if let Some(b) = lin.bs.as_mut() {
            let nb = nn::init(bs_init, &b.size(), device).to_kind(kind);
            b.copy_(&nb);
        }
    });
}

/// Applies `lin` after a ReLU, the way DeepCluster puts its top layer on the pre-ReLU fc7 the
/// trunk returns.
pub fn relu_then(lin: &nn::Linear, features: &Tensor) -> Tensor {
    features.relu().apply(lin)
}
