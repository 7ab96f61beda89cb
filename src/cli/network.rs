//! The network a read-only verb (`eval`, `visualize`) looks at: a checkpoint's trunk, or a
//! randomly initialised one as the baseline, and the layer whose output it reads.

use crate::eval::linear::pool_below;
use crate::model::{self, ModelConfig, Network};
use crate::train::run::{device, trunk_from_checkpoint};
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use tch::{nn, Tensor};

#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// A checkpoint (.safetensors) or a run directory (its latest checkpoint).
    #[arg(long, required_unless_present = "random_init")]
    pub checkpoint: Option<PathBuf>,
    /// Use a randomly initialised network instead (the baseline), built with --arch/--crop.
    #[arg(long)]
    pub random_init: bool,
    /// Network for --random-init.
    #[arg(long, default_value = "alexnet")]
    pub arch: String,
    #[arg(long)]
    pub sobel: bool,
    /// Input side for --random-init (a checkpoint brings its own).
    #[arg(long, default_value_t = 224)]
    pub crop: u32,
    /// Seed of the random network (and of anything else random in the verb).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// A loaded network: keep `_vs` alive as long as `trunk` is used.
pub struct LoadedNetwork {
    pub _vs: nn::VarStore,
    pub trunk: Box<dyn Network>,
    /// The input side the network was trained at.
    pub crop: u32,
    /// What it is, for reports: the checkpoint path with method and arch, or "random ARCH".
    pub source: String,
}

/// A layer's output for a batch, in eval mode.
pub type LayerFn = Box<dyn Fn(&dyn Network, &Tensor) -> Tensor>;

impl NetworkArgs {
    pub fn load(&self) -> anyhow::Result<LoadedNetwork> {
        if self.random_init {
            tch::manual_seed(self.seed as i64);
            let vs = nn::VarStore::new(device());
            let arch = <model::Arch as clap::ValueEnum>::from_str(&self.arch, true).map_err(|e| anyhow::anyhow!("--arch {}: {e}", self.arch))?;
            let trunk = model::build(&vs.root(), &ModelConfig { arch, sobel: self.sobel, cifar_stem: self.crop <= 64 });
            return Ok(LoadedNetwork { _vs: vs, trunk, crop: self.crop, source: format!("random {}", self.arch) });
        }
        let path = self.checkpoint.as_ref().context("--checkpoint or --random-init")?;
        let (vs, trunk, cfg) = trunk_from_checkpoint(path).with_context(|| format!("loading {}", path.display()))?;
        Ok(LoadedNetwork { _vs: vs, trunk, crop: cfg.crop, source: format!("{} ({} {})", path.display(), cfg.method, cfg.arch) })
    }
}

/// Index (from 0) of `convN` (N from 1) among the network's conv layers / ResNet stages.
pub fn conv_layer(trunk: &dyn Network, layer: &str, crop: u32) -> anyhow::Result<usize> {
    let Some(i) = layer.strip_prefix("conv").and_then(|n| n.parse::<usize>().ok()).filter(|&i| i >= 1) else {
        bail!("the layer must be convN (N from 1), not {layer:?}");
    };
    let side = crop.max(32) as i64;
    let probe = Tensor::zeros([1, 3, side, side], (tch::Kind::Float, device()));
    let n = tch::no_grad(|| trunk.conv_outputs(&probe, false).len());
    if i > n {
        bail!("layer conv{i}: this network has {n} conv layers/stages");
    }
    Ok(i - 1)
}

/// `features` (the trunk's output) or `convN` (post-ReLU, average-pooled below 10,000
/// dimensions, as the seeds' linear probes do).
pub fn layer_fn(trunk: &dyn Network, layer: &str, crop: u32) -> anyhow::Result<LayerFn> {
    if layer == "features" {
        return Ok(Box::new(|t: &dyn Network, x: &Tensor| t.forward_t(x, false)));
    }
    let i = conv_layer(trunk, layer, crop).with_context(|| format!("--layer {layer}: `features` or convN"))?;
    Ok(Box::new(move |t: &dyn Network, x: &Tensor| pool_below(&t.conv_outputs(x, false)[i], 10_000)))
}
