//! ResNet-18 (BasicBlock) and ResNet-50 (Bottleneck, stride on the 3x3 as torchvision's v1.5)
//! with torchvision's parameter names: `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}`,
//! `.bn{1,2,3}`, `.downsample.0` (1x1 conv) / `.downsample.1` (BN). No `fc`: the trunk output is
//! the flattened global average pool (512 / 2048). Init as torchvision: conv
//! kaiming_normal(fan_out, relu), no conv biases, BN 1/0 (zero_init_residual = false).
//!
//! `cifar_stem`: conv1 is 3x3 stride 1 padding 1 and there is no max-pool (MoCo's CIFAR demo).

use tch::nn;
use tch::Tensor;

use super::layers::{bn2d, conv2d, front, Bn2d, Sobel};
use super::{Arch, Network};

#[derive(Debug)]
struct Downsample {
    conv: nn::Conv2D,
    bn: Bn2d,
}

/// One residual block. Not boxed: the variants' size difference is nothing next to the tensors
/// they point to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Block {
    Basic { conv1: nn::Conv2D, bn1: Bn2d, conv2: nn::Conv2D, bn2: Bn2d, down: Option<Downsample> },
    Bottleneck {
        conv1: nn::Conv2D,
        bn1: Bn2d,
        conv2: nn::Conv2D,
        bn2: Bn2d,
        conv3: nn::Conv2D,
        bn3: Bn2d,
        down: Option<Downsample>,
    },
}

impl Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (out, down) = match self {
            Block::Basic { conv1, bn1, conv2, bn2, down } => {
                let y = x.apply(conv1).apply_t(bn1, train).relu();
                (y.apply(conv2).apply_t(bn2, train), down)
            }
            Block::Bottleneck { conv1, bn1, conv2, bn2, conv3, bn3, down } => {
                let y = x.apply(conv1).apply_t(bn1, train).relu();
                let y = y.apply(conv2).apply_t(bn2, train).relu();
                (y.apply(conv3).apply_t(bn3, train), down)
            }
        };
        let identity = match down {
            Some(d) => x.apply(&d.conv).apply_t(&d.bn, train),
            None => x.shallow_clone(),
        };
        (out + identity).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    arch: Arch,
    sobel: Option<Sobel>,
    conv1: nn::Conv2D,
    bn1: Bn2d,
    maxpool: bool,
    layers: Vec<Vec<Block>>,
    feature_dim: i64,
}

impl ResNet {
    /// `arch` must be `ResNet18` or `ResNet50` (panics otherwise: a programming error).
    pub fn new(p: &nn::Path, arch: Arch, sobel: bool, cifar_stem: bool) -> ResNet {
        let (blocks, bottleneck): ([usize; 4], bool) = match arch {
            Arch::ResNet18 => ([2, 2, 2, 2], false),
            Arch::ResNet50 => ([3, 4, 6, 3], true),
            other => panic!("ResNet::new called with {other}"),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let cin = if sobel { 2 } else { 3 };
        let conv1 = if cifar_stem {
            conv2d(p / "conv1", cin, 64, 3, 1, 1, false)
        } else {
            conv2d(p / "conv1", cin, 64, 7, 2, 3, false)
        };
        let bn1 = bn2d(p / "bn1", 64);
        let mut inplanes = 64i64;
        let mut layers = Vec::with_capacity(4);
        for (li, (&n, planes)) in blocks.iter().zip([64i64, 128, 256, 512]).enumerate() {
            let lp = p / format!("layer{}", li + 1);
            let mut layer = Vec::with_capacity(n);
            for bi in 0..n {
                let stride = if li > 0 && bi == 0 { 2 } else { 1 };
                let bp = &lp / bi.to_string();
                let down = (stride != 1 || inplanes != planes * expansion).then(|| Downsample {
                    conv: conv2d(&bp / "downsample" / "0", inplanes, planes * expansion, 1, stride, 0, false),
                    bn: bn2d(&bp / "downsample" / "1", planes * expansion),
                });
                let block = if bottleneck {
                    Block::Bottleneck {
                        conv1: conv2d(&bp / "conv1", inplanes, planes, 1, 1, 0, false),
                        bn1: bn2d(&bp / "bn1", planes),
                        conv2: conv2d(&bp / "conv2", planes, planes, 3, stride, 1, false),
                        bn2: bn2d(&bp / "bn2", planes),
                        conv3: conv2d(&bp / "conv3", planes, planes * 4, 1, 1, 0, false),
                        bn3: bn2d(&bp / "bn3", planes * 4),
                        down,
                    }
                } else {
                    Block::Basic {
                        conv1: conv2d(&bp / "conv1", inplanes, planes, 3, stride, 1, false),
                        bn1: bn2d(&bp / "bn1", planes),
                        conv2: conv2d(&bp / "conv2", planes, planes, 3, 1, 1, false),
                        bn2: bn2d(&bp / "bn2", planes),
                        down,
                    }
                };
                inplanes = planes * expansion;
                layer.push(block);
            }
            layers.push(layer);
        }
        let sobel = sobel.then(|| Sobel::new(p));
        ResNet { arch, sobel, conv1, bn1, maxpool: !cifar_stem, layers, feature_dim: 512 * expansion }
    }

    fn stem(&self, x: &Tensor, train: bool) -> Tensor {
        let x = front(&self.sobel, x).apply(&self.conv1).apply_t(&self.bn1, train).relu();
        if self.maxpool {
            x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
        } else {
            x
        }
    }

    fn run_layer(layer: &[Block], x: Tensor, train: bool) -> Tensor {
        layer.iter().fold(x, |x, b| b.forward_t(&x, train))
    }
}

impl Network for ResNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.layers.iter().fold(self.stem(x, train), |x, l| ResNet::run_layer(l, x, train));
        x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
    /// Five tensors: the stem output (after ReLU and, without `cifar_stem`, the max-pool: the
    /// input of layer1), then the outputs of layer1..layer4.
    fn conv_outputs(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut outs = Vec::with_capacity(5);
        let mut x = self.stem(x, train);
        outs.push(x.shallow_clone());
        for l in &self.layers {
            x = ResNet::run_layer(l, x, train);
            outs.push(x.shallow_clone());
        }
        outs
    }
    fn arch(&self) -> Arch {
        self.arch
    }
}
