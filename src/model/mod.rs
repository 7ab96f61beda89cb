//! Networks (tch), with parameter names identical to torchvision's (DeepCluster's for AlexNet-BN)
//! so that weights move both ways through safetensors.
//!
//! A network is a trunk: images (normalised float NCHW, 3 channels) in, features out. The
//! classification heads the methods put on top live in [`heads`], in their own VarStores, so a
//! method can re-initialise them (DeepCluster: every epoch) without touching the trunk.
//!
//! | arch | `--arch` | trunk output ([`Network::forward_t`]) | [`Network::conv_outputs`] |
//! |---|---|---|---|
//! | DeepCluster AlexNet-BN | `alexnet` | pre-ReLU fc7, 4096 (input 224x224) | 5 conv layers |
//! | VGG16-BN (torchvision) | `vgg16` | pre-ReLU `classifier.3`, 4096 | 13 conv layers |
//! | ResNet-18 (torchvision) | `resnet18` | global average pool, 512 | stem, layer1..4 |
//! | ResNet-50 (torchvision) | `resnet50` | global average pool, 2048 | stem, layer1..4 |
//! | small CNN (28x28 / 32x32) | `small` | pre-ReLU `classifier.0`, 256 | 3 conv layers |
//!
//! With [`ModelConfig::sobel`] the network starts with DeepCluster's frozen grayscale + Sobel
//! convs (`sobel.0.*`, `sobel.1.*`, padding 1; see [`Sobel`]) and its first conv takes 2
//! channels. Those four tensors have `requires_grad == false` and are not among
//! `VarStore::trainable_variables()`: an optimiser built with tch's `OptimizerConfig::build(&vs,
//! ..)` skips them; one built by hand from `vs.variables()` must skip every tensor whose
//! `requires_grad()` is false (the Sobel weights and the BatchNorm running statistics).
//!
//! Weights: [`save_torchvision`] / [`load_torchvision`] (safetensors, torchvision names).

mod alexnet;
mod error;
pub mod export;
pub mod heads;
mod layers;
mod resnet;
mod small;
mod vgg;

use std::fmt;
use std::str::FromStr;

use tch::Tensor;

pub use alexnet::AlexNet;
pub use error::ModelError;
pub use export::{load_torchvision, save_torchvision, LoadReport};
pub use heads::{linear_head, reset_linear, HeadInit};
pub use layers::Sobel;
pub use resnet::ResNet;
pub use small::Small;
pub use vgg::Vgg16Bn;

/// A trunk architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// DeepCluster's AlexNet with BatchNorm (input 224x224).
    #[value(name = "alexnet")]
    AlexNet,
    /// torchvision's VGG16-BN.
    #[value(name = "vgg16", alias = "vgg16_bn")]
    #[serde(rename = "vgg16", alias = "vgg16_bn")]
    Vgg16Bn,
    #[value(name = "resnet18")]
    ResNet18,
    #[value(name = "resnet50")]
    ResNet50,
    /// A small CNN for 28x28 / 32x32 images, trainable on a CPU.
    #[value(name = "small")]
    Small,
}

impl Arch {
    pub const ALL: [Arch; 5] = [Arch::AlexNet, Arch::Vgg16Bn, Arch::ResNet18, Arch::ResNet50, Arch::Small];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::AlexNet => "alexnet",
            Arch::Vgg16Bn => "vgg16",
            Arch::ResNet18 => "resnet18",
            Arch::ResNet50 => "resnet50",
            Arch::Small => "small",
        }
    }

    /// Width of the trunk output ([`Network::feature_dim`]).
    pub fn feature_dim(self) -> i64 {
        match self {
            Arch::AlexNet | Arch::Vgg16Bn => 4096,
            Arch::ResNet18 => 512,
            Arch::ResNet50 => 2048,
            Arch::Small => 256,
        }
    }

    /// Whether the trunk has dropout (AlexNet, VGG): its train-mode output is then random.
    pub fn has_dropout(self) -> bool {
        matches!(self, Arch::AlexNet | Arch::Vgg16Bn)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Arch, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "alexnet" => Ok(Arch::AlexNet),
            "vgg16" | "vgg16_bn" | "vgg16bn" => Ok(Arch::Vgg16Bn),
            "resnet18" => Ok(Arch::ResNet18),
            "resnet50" => Ok(Arch::ResNet50),
            "small" => Ok(Arch::Small),
            _ => Err(ModelError::UnknownArch(s.to_string())),
        }
    }
}

/// What [`build`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    /// DeepCluster's frozen grayscale + Sobel front end (the first conv then has 2 input channels).
    pub sobel: bool,
    /// ResNets only: conv1 3x3 stride 1 padding 1 and no max-pool (for 32x32 inputs). Ignored by
    /// the other architectures.
    pub cifar_stem: bool,
}

impl ModelConfig {
    /// `arch` without Sobel, with the ImageNet stem.
    pub fn new(arch: Arch) -> ModelConfig {
        ModelConfig { arch, sobel: false, cifar_stem: false }
    }
}

/// A trunk: images (normalised float NCHW, 3 channels) in, features out.
pub trait Network: Send + std::fmt::Debug {
    /// Trunk features [N, feature_dim]: AlexNet/VGG/Small: the pre-ReLU last fc (DeepCluster's
    /// fc7 convention; callers apply relu before a head); ResNets: flattened avgpool output.
    /// `train` selects batch statistics (and updates the BatchNorm running statistics) and
    /// enables dropout.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor;
    fn feature_dim(&self) -> i64;
    /// Post-ReLU output of every conv layer (AlexNet/VGG/Small, before any pooling) or every stage
    /// (ResNet: the stem after ReLU and max-pool, then layer1..4), for linear probes and filter
    /// visualisation.
    fn conv_outputs(&self, x: &Tensor, train: bool) -> Vec<Tensor>;
    fn arch(&self) -> Arch;
}

impl tch::nn::ModuleT for Box<dyn Network> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Network::forward_t(self.as_ref(), xs, train)
    }
}

/// Builds the trunk `cfg` under `root` with its default initialisation (drawn from libtorch's
/// global generator: call `tch::manual_seed` first for a reproducible network). Build at
/// `vs.root()` for torchvision/DeepCluster parameter names.
pub fn build(root: &tch::nn::Path, cfg: &ModelConfig) -> Box<dyn Network> {
    match cfg.arch {
        Arch::AlexNet => Box::new(AlexNet::new(root, cfg.sobel)),
        Arch::Vgg16Bn => Box::new(Vgg16Bn::new(root, cfg.sobel)),
        Arch::ResNet18 | Arch::ResNet50 => Box::new(ResNet::new(root, cfg.arch, cfg.sobel, cfg.cifar_stem)),
        Arch::Small => Box::new(Small::new(root, cfg.sobel)),
    }
}
