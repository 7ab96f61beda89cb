//! A small CNN for 28x28 / 32x32 inputs (Fashion-MNIST, CIFAR), fast enough to train on a CPU.
//!
//! features (`features.N`): conv3x3(c->32, pad 1) BN ReLU MaxPool(2,2) | conv3x3(32->64) BN ReLU
//! MaxPool(2,2) | conv3x3(64->128) BN ReLU, then AdaptiveAvgPool(3,3) (index 11, no parameters);
//! classifier: `classifier.0` Linear 1152->256. The trunk output is that layer pre-ReLU (256-d),
//! like AlexNet's fc7. Cost: 8.2 M multiply-adds per 28x28 image (10.7 M at 32x32). Init as DC:
//! conv N(0, sqrt(2/(k*k*out))) bias 0, BN 1/0, Linear N(0, 0.01) bias 0.

use tch::nn;
use tch::Tensor;

use super::layers::{front, linear_n001, ConvSpec, ConvStack, Sobel};
use super::{Arch, Network};

const SPECS: [ConvSpec; 3] = [
    ConvSpec { out: 32, k: 3, stride: 1, pad: 1, pool: Some((2, 2)) },
    ConvSpec { out: 64, k: 3, stride: 1, pad: 1, pool: Some((2, 2)) },
    ConvSpec { out: 128, k: 3, stride: 1, pad: 1, pool: None },
];

#[derive(Debug)]
pub struct Small {
    sobel: Option<Sobel>,
    features: ConvStack,
    fc: nn::Linear,
}

impl Small {
    pub fn new(p: &nn::Path, sobel: bool) -> Small {
        let cin = if sobel { 2 } else { 3 };
        let features = ConvStack::new(&(p / "features"), cin, &SPECS);
        let fc = linear_n001(p / "classifier" / "0", 128 * 3 * 3, 256);
        let sobel = sobel.then(|| Sobel::new(p));
        Small { sobel, features, fc }
    }
}

impl Network for Small {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.features.run(&front(&self.sobel, x), train, None);
        x.adaptive_avg_pool2d([3, 3]).flatten(1, -1).apply(&self.fc)
    }
    fn feature_dim(&self) -> i64 {
        256
    }
    fn conv_outputs(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut taps = Vec::with_capacity(SPECS.len());
        let _ = self.features.run(&front(&self.sobel, x), train, Some(&mut taps));
        taps
    }
    fn arch(&self) -> Arch {
        Arch::Small
    }
}
