//! DeepCluster's AlexNet-BN (DC models/alexnet.py), parameter names as in DC's state dicts.
//!
//! features (`features.N`): conv(96,11,4,2) BN ReLU MaxPool(3,2) | conv(256,5,1,2) BN ReLU
//! MaxPool(3,2) | conv(384,3,1,1) BN ReLU | conv(384,3,1,1) BN ReLU | conv(256,3,1,1) BN ReLU
//! MaxPool(3,2) => 256x6x6 for a 224x224 input (DC has no adaptive pooling: the input must give a
//! 6x6 map, i.e. 224..=238 pixels). classifier: Dropout(.5) `classifier.1` Linear 9216->4096
//! ReLU Dropout(.5) `classifier.4` Linear 4096->4096; the trunk stops before DC's last ReLU and
//! `top_layer` (pre-ReLU fc7, what DC clusters). Init: conv N(0, sqrt(2/(k*k*out))), bias 0;
//! BN 1/0; Linear N(0, 0.01), bias 0.

use tch::nn;
use tch::Tensor;

use super::layers::{front, linear_n001, ConvSpec, ConvStack, Sobel};
use super::{Arch, Network};

const SPECS: [ConvSpec; 5] = [
    ConvSpec { out: 96, k: 11, stride: 4, pad: 2, pool: Some((3, 2)) },
    ConvSpec { out: 256, k: 5, stride: 1, pad: 2, pool: Some((3, 2)) },
    ConvSpec { out: 384, k: 3, stride: 1, pad: 1, pool: None },
    ConvSpec { out: 384, k: 3, stride: 1, pad: 1, pool: None },
    ConvSpec { out: 256, k: 3, stride: 1, pad: 1, pool: Some((3, 2)) },
];

#[derive(Debug)]
pub struct AlexNet {
    sobel: Option<Sobel>,
    features: ConvStack,
    fc6: nn::Linear,
    fc7: nn::Linear,
}

impl AlexNet {
    pub fn new(p: &nn::Path, sobel: bool) -> AlexNet {
        let cin = if sobel { 2 } else { 3 };
        let features = ConvStack::new(&(p / "features"), cin, &SPECS);
        let fc6 = linear_n001(p / "classifier" / "1", 256 * 6 * 6, 4096);
        let fc7 = linear_n001(p / "classifier" / "4", 4096, 4096);
        // DC builds the sobel layers after initialising the rest.
        let sobel = sobel.then(|| Sobel::new(p));
        AlexNet { sobel, features, fc6, fc7 }
    }
}

impl Network for AlexNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = self.features.run(&front(&self.sobel, x), train, None).flatten(1, -1);
        x.dropout(0.5, train).apply(&self.fc6).relu().dropout(0.5, train).apply(&self.fc7)
    }
    fn feature_dim(&self) -> i64 {
        4096
    }
    fn conv_outputs(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let mut taps = Vec::with_capacity(SPECS.len());
        let _ = self.features.run(&front(&self.sobel, x), train, Some(&mut taps));
        taps
    }
    fn arch(&self) -> Arch {
        Arch::AlexNet
    }
}
