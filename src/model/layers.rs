//! Building blocks shared by the networks: DeepCluster/torchvision initialisations, the frozen
//! Sobel front end, and the `features.N` stack of conv-BN-ReLU(-pool) blocks that AlexNet, VGG
//! and the small CNN share.

use tch::nn::{self, ModuleT};
use tch::Tensor;

/// DeepCluster's conv init, identical to torchvision's `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`: N(0, sqrt(2 / (k * k * out))).
pub(crate) fn conv_init(out: i64, k: i64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: (2.0 / (k * k * out) as f64).sqrt() }
}

/// A 2-d convolution with the fan-out normal init; bias (if any) zero.
pub(crate) fn conv2d(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, pad: i64, bias: bool) -> nn::Conv2D {
    let cfg = nn::ConvConfig {
        stride,
        padding: pad,
        bias,
        ws_init: conv_init(cout, k),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// BatchNorm2d that becomes SyncBatchNorm when the trainer enables it (`crate::dist::sync_bn`).
#[derive(Debug)]
pub(crate) struct Bn2d(nn::BatchNorm);

impl nn::ModuleT for Bn2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        crate::dist::sync_bn::batch_norm(&self.0, xs, train)
    }
}

/// BatchNorm2d as PyTorch builds it: weight 1, bias 0, eps 1e-5, momentum 0.1.
pub(crate) fn bn2d(p: nn::Path, c: i64) -> Bn2d {
    let cfg = nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    };
    Bn2d(nn::batch_norm2d(p, c, cfg))
}

/// Linear with DeepCluster's / torchvision VGG's init: weight N(0, 0.01), bias 0.
pub(crate) fn linear_n001(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, i, o, cfg)
}

/// The frozen grayscale + Sobel front end of DeepCluster (models/alexnet.py, models/vgg16.py):
/// `sobel.0` = Conv 3->1, 1x1, weight 1/3, bias 0; `sobel.1` = Conv 1->2, 3x3, padding 1, bias 0,
/// `ch0 = [[1,0,-1],[2,0,-2],[1,0,-1]]`, `ch1 = [[1,2,1],[0,0,0],[-1,-2,-1]]`.
///
/// The four tensors are registered in the VarStore as non-trainable (`requires_grad == false`,
/// absent from `VarStore::trainable_variables`, untouched by `VarStore::freeze/unfreeze`), so they
/// are saved and loaded with the trunk but an optimiser built from the VarStore never sees them.
#[derive(Debug)]
pub struct Sobel {
    gray_w: Tensor,
    gray_b: Tensor,
    sobel_w: Tensor,
    sobel_b: Tensor,
}

impl Sobel {
    /// The exact DeepCluster values: (grayscale weight `[1, 3, 1, 1]`, sobel weight `[2, 1, 3, 3]`).
    pub fn dc_weights() -> (Tensor, Tensor) {
        let gray = Tensor::from_slice(&[(1.0f64 / 3.0) as f32; 3]).view([1, 3, 1, 1]);
        #[rustfmt::skip]
        let k: [f32; 18] = [
            1., 0., -1.,  2., 0., -2.,  1., 0., -1.,
            1., 2., 1.,   0., 0., 0.,   -1., -2., -1.,
        ];
        (gray, Tensor::from_slice(&k).view([2, 1, 3, 3]))
    }

    /// Registers `sobel.0.{weight,bias}` and `sobel.1.{weight,bias}` under `p` (the network root).
    pub(crate) fn new(p: &nn::Path) -> Sobel {
        let opts = (p.kind(), p.device());
        let (gray, sobel) = Sobel::dc_weights();
        let s = p.sub("sobel");
        let (s0, s1) = (s.sub("0"), s.sub("1"));
        Sobel {
            gray_w: s0.add("weight", gray.to_kind(opts.0).to_device(opts.1), false),
            gray_b: s0.add("bias", Tensor::zeros([1], opts), false),
            sobel_w: s1.add("weight", sobel.to_kind(opts.0).to_device(opts.1), false),
            sobel_b: s1.add("bias", Tensor::zeros([2], opts), false),
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let g = x.conv2d(&self.gray_w, Some(&self.gray_b), [1, 1], [0, 0], [1, 1], 1);
        g.conv2d(&self.sobel_w, Some(&self.sobel_b), [1, 1], [1, 1], [1, 1], 1)
    }
}

/// Applies the Sobel front end when present.
pub(crate) fn front(sobel: &Option<Sobel>, x: &Tensor) -> Tensor {
    match sobel {
        Some(s) => s.forward(x),
        None => x.shallow_clone(),
    }
}

/// One conv layer of a `features` stack: conv, BN, ReLU, then an optional max-pool (kernel, stride).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSpec {
    pub out: i64,
    pub k: i64,
    pub stride: i64,
    pub pad: i64,
    pub pool: Option<(i64, i64)>,
}

#[derive(Debug)]
struct ConvBlock {
    conv: nn::Conv2D,
    bn: Bn2d,
    pool: Option<(i64, i64)>,
}

/// `features` as a PyTorch `nn.Sequential` numbers it: each conv takes indices conv, BN, ReLU
/// (3), a max-pool one more, so parameter names are `features.{N}.weight` etc.
#[derive(Debug)]
pub(crate) struct ConvStack {
    blocks: Vec<ConvBlock>,
}

impl ConvStack {
    pub(crate) fn new(p: &nn::Path, cin: i64, specs: &[ConvSpec]) -> ConvStack {
        let mut idx = 0usize;
        let mut cin = cin;
        let mut blocks = Vec::with_capacity(specs.len());
        for s in specs {
            let conv = conv2d(p.sub(idx.to_string()), cin, s.out, s.k, s.stride, s.pad, true);
            let bn = bn2d(p.sub((idx + 1).to_string()), s.out);
            idx += 3 + usize::from(s.pool.is_some());
            cin = s.out;
            blocks.push(ConvBlock { conv, bn, pool: s.pool });
        }
        ConvStack { blocks }
    }

    /// Runs the stack; when `taps` is given, pushes every post-ReLU conv output (before pooling)
    /// and returns the last of them (the final pooling, useless then, is skipped).
    pub(crate) fn run(&self, x: &Tensor, train: bool, mut taps: Option<&mut Vec<Tensor>>) -> Tensor {
        let mut x = x.shallow_clone();
        let last = self.blocks.len().saturating_sub(1);
        for (i, b) in self.blocks.iter().enumerate() {
            x = x.apply(&b.conv).apply_t(&b.bn, train).relu();
            if let Some(t) = taps.as_deref_mut() {
                t.push(x.shallow_clone());
                if i == last {
                    break;
                }
            }
            if let Some((k, s)) = b.pool {
                x = x.max_pool2d([k, k], [s, s], [0, 0], [1, 1], false);
            }
        }
        x
    }
}

impl ModuleT for ConvStack {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, None)
    }
}
