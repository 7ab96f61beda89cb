//! Self-supervised methods on the common trainer. Each method is one file implementing
//! [`Method`]: which views the loader makes, what happens at the start of an epoch (snapshot
//! features, cluster, re-initialise heads, choose the sampler), the loss of one batch, and the
//! state a checkpoint must carry. The trainer (`crate::train`) owns the trunk, its optimiser, the
//! loader, checkpoints and logs.

pub mod clustering;
pub mod contrastive;
pub mod deepcluster;
pub mod deepercluster;
pub mod instdisc;
pub mod moco;
pub mod pic;
pub mod rotnet;
pub mod sela;
pub mod simclr;

use crate::loader::{Batch, Pipeline, SamplerKind};
use crate::model::Network;
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::features::ExtractOptions;
use crate::train::metrics::MetricsLog;
use silt_shards::Dataset;
use std::collections::HashMap;
use std::sync::Arc;
use tch::{Device, Tensor};

pub const METHODS: &[&str] = &["deepcluster", "rotnet", "deepercluster", "moco", "moco-v2", "simclr", "instdisc", "sela", "pic"];

/// What a method sees at the start of an epoch.
pub struct EpochContext<'a> {
    pub epoch: u64,
    pub cfg: &'a TrainConfig,
    pub trunk: &'a dyn Network,
    pub ds: &'a Arc<Dataset>,
    /// Records in use (the first `records` of the dataset).
    pub records: u64,
    pub extract: ExtractOptions,
    pub log: &'a mut MetricsLog,
}

/// One batch's result.
pub struct StepOutput {
    pub loss: Tensor,
    /// Accuracy of the method's own prediction task on this batch (pseudo-labels, rotations).
    pub accuracy: Option<f64>,
}

/// Optimiser settings a method recommends (its upstream defaults); flags override them.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub batch_size: usize,
    /// RandomResizedCrop's smallest area fraction (torchvision's 0.08; MoCo and InstDisc 0.2).
    pub min_scale: f64,
}

pub trait Method {
    fn name(&self) -> &'static str;

    /// The loader's training views.
    fn pipeline(&self) -> Pipeline;

    /// Called before each epoch. `restored` is true when the method's state for this epoch came
    /// from a checkpoint (a resume mid-epoch): it must then not re-cluster or re-initialise.
    /// Returns how this epoch's samples are drawn.
    fn begin_epoch(&mut self, ctx: &mut EpochContext, restored: bool) -> Result<SamplerKind>;

    /// The loss of one batch, trunk in training mode.
    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput>;

    /// Zero the gradients of the method's own parameters (heads).
    fn zero_grad(&mut self) {
        crate::train::optim::zero_grads(self.parameters());
    }
    /// Update the method's own parameters with learning rate `lr`.
    fn update(&mut self, lr: f64);

    /// The method's own trainable tensors (heads), in a fixed order: data-parallel runs
    /// broadcast them from rank 0 after `begin_epoch` and average their gradients every step.
    fn parameters(&self) -> &[Tensor];

    /// Called before every step, on every rank, also when this rank's batch is empty (its step is
    /// then skipped): for a method whose step depends on the other ranks' batches (PIC's sampled
    /// softmax takes every rank's records as classes). The default does nothing.
    fn plan_step(&mut self, _batch: &Batch, _device: Device) -> Result<()> {
        Ok(())
    }

    /// Tensors of the current step that receive a gradient but are not parameters (PIC's sampled
    /// rows of W); data-parallel runs average their gradients with the parameters'. Every rank
    /// must return the same shapes.
    fn step_leaves(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Tensors (heads, optimiser buffers, pseudo-labels) and small JSON state for a checkpoint.
    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value);
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &serde_json::Value) -> Result<()>;

    /// Called before every step with the number of steps the run has done so far (`step` is the
    /// index of the step about to run, counted over the whole run, also after a resume). For
    /// methods whose state changes on a schedule counted in iterations rather than epochs: SeLa
    /// re-optimises its labels when `step × batch size` passes its next relabelling time. The
    /// context's trunk may be run (eval mode) to extract features. The default does nothing.
    fn before_step(&mut self, _ctx: &mut EpochContext, _step: u64) -> Result<()> {
        Ok(())
    }

    /// Called once by the trainer after the trunk is built and any checkpoint restored, with the
    /// trunk's variables (shallow clones: they share storage with the trained tensors). Methods
    /// that read the trunk's weights outside `step` keep them (MoCo: its momentum encoder follows
    /// them).
    fn attach(&mut self, _trunk_vars: &[(String, Tensor)]) -> Result<()> {
        Ok(())
    }

    /// Current pseudo-labels per record, if the method has them (exported as a plain file).
    fn pseudo_labels(&self) -> Option<Vec<i64>> {
        None
    }
}

pub fn defaults(method: &str) -> Option<Defaults> {
    Some(match method {
        // DC main.py: lr 0.05, momentum 0.9, wd 1e-5, batch 256.
        "deepcluster" => Defaults { lr: 0.05, momentum: 0.9, weight_decay: 1e-5, nesterov: false, batch_size: 256, min_scale: 0.08 },
        // ROT config: nesterov momentum 0.9, wd 5e-4, lr 0.01 (the table's first row), 192 images.
        "rotnet" => Defaults { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, nesterov: true, batch_size: 192, min_scale: 0.08 },
        // DRC main.sh: lr 0.1, wd 1e-5, momentum 0.9, batch 48 per process.
        "deepercluster" => Defaults { lr: 0.1, momentum: 0.9, weight_decay: 1e-5, nesterov: false, batch_size: 48, min_scale: 0.08 },
        // MoCo main_moco.py: lr 0.03, momentum 0.9, wd 1e-4, batch 256 (v2 the same, with --cos).
        "moco" | "moco-v2" => Defaults { lr: 0.03, momentum: 0.9, weight_decay: 1e-4, nesterov: false, batch_size: 256, min_scale: 0.2 },
        // SimCLR v1: batch 512 (flag default), lr 0.3 x batch/256 (the CLI scales it), wd 1e-6, momentum 0.9.
        "simclr" => Defaults { lr: 0.6, momentum: 0.9, weight_decay: 1e-6, nesterov: false, batch_size: 512, min_scale: 0.08 },
        // InstDisc main.py: lr 0.03, momentum 0.9, wd 1e-4, batch 256.
        "instdisc" => Defaults { lr: 0.03, momentum: 0.9, weight_decay: 1e-4, nesterov: false, batch_size: 256, min_scale: 0.2 },
        // SeLa main.py: lr 0.08 (the code's default; its help text says 0.05), momentum 0.9,
        // wd 10^-5, batch 256.
        "sela" => Defaults { lr: 0.08, momentum: 0.9, weight_decay: 1e-5, nesterov: false, batch_size: 256, min_scale: 0.08 },
        // PIC main_pretrain.py / option.py: base lr 0.03 x B/256 (the CLI scales it), momentum
        // 0.9, wd 1e-4, 64 per GPU x 4 GPUs = 256; crop scale 0.08 (scripts/PIC.sh --crop 0.08).
        "pic" => Defaults { lr: 0.03, momentum: 0.9, weight_decay: 1e-4, nesterov: false, batch_size: 256, min_scale: 0.08 },
        _ => return None,
    })
}

/// Builds the method named in `cfg`; `feature_dim` is the trunk's output width.
pub fn build(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Result<Box<dyn Method>> {
    Ok(match cfg.method.as_str() {
        "deepcluster" => Box::new(deepcluster::DeepCluster::new(cfg, feature_dim, device)),
        "rotnet" => Box::new(rotnet::RotNet::new(cfg, feature_dim, device)),
        "deepercluster" => Box::new(deepercluster::DeeperCluster::new(cfg, feature_dim, device)?),
        "moco" | "moco-v2" => Box::new(moco::Moco::new(cfg, feature_dim, device)?),
        "simclr" => Box::new(simclr::SimClr::new(cfg, feature_dim, device)),
        "instdisc" => Box::new(instdisc::InstDisc::new(cfg, feature_dim, device)),
        "sela" => Box::new(sela::Sela::new(cfg, feature_dim, device)?),
        "pic" => Box::new(pic::Pic::new(cfg, feature_dim, device)?),
        other => return Err(TrainError::Config(format!("unknown method {other:?}; known: {}", METHODS.join(", ")))),
    })
}

/// The sampler of the methods that visit every record once per epoch: a global shuffle, or with
/// `--cache-mode part` each rank's own contiguous shards, shuffled.
pub(crate) fn instance_sampler(ctx: &EpochContext) -> SamplerKind {
    if ctx.cfg.cache_mode != crate::loader::CacheMode::Part {
        return SamplerKind::Shuffle;
    }
    let ds = ctx.ds;
    let n = ds.shards().len();
    let shard_counts = (0..n)
        .map(|s| {
            let end = if s + 1 < n { ds.shard_start(s + 1) } else { ds.len() };
            end.min(ctx.records) - ds.shard_start(s).min(ctx.records)
        })
        .collect();
    SamplerKind::Part { shard_counts }
}

/// Looks up a saved tensor by name, with a clear error.
pub(crate) fn saved<'a>(tensors: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    tensors.get(name).ok_or_else(|| TrainError::Config(format!("checkpoint lacks tensor {name:?}")))
}

/// Mean cross-entropy and top-1 accuracy of `logits` against `targets`.
pub(crate) fn cross_entropy(logits: &Tensor, targets: &Tensor) -> (Tensor, f64) {
    let loss = logits.cross_entropy_for_logits(targets);
    let acc = tch::no_grad(|| logits.argmax(-1, false).eq_tensor(targets).to_kind(tch::Kind::Float).mean(tch::Kind::Float).double_value(&[]));
    (loss, acc)
}

/// The crop sizes and scales of a training view, from the run configuration.
pub(crate) fn train_view(cfg: &TrainConfig) -> crate::loader::ViewSpec {
    crate::loader::ViewSpec::rrc(1, cfg.crop, (cfg.min_scale, 1.0))
}
