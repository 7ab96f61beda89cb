//! VGG16-BN with torchvision's parameter names (`features.N`, `classifier.0`, `classifier.3`).
//!
//! features: cfg 64,64,M,128,128,M,256x3,M,512x3,M,512x3,M with 3x3 pad-1 conv, BN, ReLU,
//! MaxPool(2,2); then AdaptiveAvgPool(7,7) as torchvision (identity at 224x224, where DC's VGG
//! has no pooling); classifier `classifier.0` Linear 25088->4096, ReLU, Dropout(.5),
//! `classifier.3` Linear 4096->4096. The trunk output is pre-ReLU classifier.3 (4096-d);
//! torchvision's `classifier.6` (the 1000-way head) is not part of the trunk. Init as torchvision
//! and DC: conv N(0, sqrt(2/(k*k*out))) bias 0, BN 1/0, Linear N(0, 0.01) bias 0.

use tch::nn;
use tch::Tensor;

use super::layers::{front, linear_n001, ConvSpec, ConvStack, Sobel};
use super::{Arch, Network};

fn specs() -> Vec<ConvSpec> {
    let cfg: [(i64, bool); 13] = [
        (64, false), (64, true),
        (128, false), (128, true),
        (256, false), (256, false), (256, true),
        (512, false), (512, false), (512, true),
        (512, false), (512, false), (512, true),
    ];
    cfg.iter()
        .map(|&(out, pool)| ConvSpec { out, k: 3, stride: 1, pad: 1, pool: pool.then_some((2, 2)) })
        .collect()
}

#[derive(Debug)]
pub struct Vgg16Bn {
    sobel: Option<Sobel>,
    features: ConvStack,
    fc6: nn::Linear,
    fc7: nn::Linear,
}

impl Vgg16Bn {
    pub fn new(p: &nn::Path, sobel: bool) -> Vgg16Bn {
        let cin = if sobel { 2 } else { 3 };
        let features = ConvStack::new(&(p / "features"), cin, &specs());
        let fc6 = linear_n001(p / "classifier" / "0", 512 * 7 * 7, 4096);
        let fc7 = linear_n001(p / "classifier" / "3", 4096, 4096);
        let sobel = sobel.then(|| Sobel::new(p));
        Vgg16Bn { sobel, features, fc6, fc7 }
    }
}

impl Network for Vgg16Bn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.features.run(&front(&self.sobel, x), train, None);
        let x = x.adaptive_avg_pool2d([7, 7]).flatten(1, -1);
        x.apply(&self.fc6).relu().dropout(0.5, train).apply(&self.fc7)
    }
    fn feature_dim(&self) -> i64 {
        4096
    }
    fn conv_outputs(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut taps = Vec::with_capacity(13);
        let _ = self.features.run(&front(&self.sobel, x), train, Some(&mut taps));
        taps
    }
    fn arch(&self) -> Arch {
        Arch::Vgg16Bn
    }
}
