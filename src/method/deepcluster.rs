//! DeepCluster (methods.md §2.1): every epoch, cluster the trunk's features (PCA-256 whitened,
//! L2-normalised, k-means), draw samples uniformly over the clusters, and train a freshly
//! initialised top layer (N(0, 0.01), its own momentum-free SGD) with the trunk on the cluster
//! ids. The trunk's optimiser (owned by the trainer) keeps its momentum across epochs.

use super::clustering::cluster_epoch;
use super::{cross_entropy, saved, train_view, EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Pipeline, SamplerKind};
use crate::model::heads::{linear_head, HeadInit};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::optim::{Sgd, SgdConfig};
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, nn::Module, Device, Kind, Tensor};

pub struct DeepCluster {
    cfg: TrainConfig,
    feature_dim: i64,
    device: Device,
    /// Cluster of every record in use (-1: not decodable), from the last clustering.
    labels: Vec<i64>,
    head_vs: nn::VarStore,
    head: nn::Linear,
    head_opt: Sgd,
}

impl DeepCluster {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Self {
        let (head_vs, head, head_opt) = fresh_head(cfg, feature_dim, device, 0);
        DeepCluster { cfg: cfg.clone(), feature_dim, device, labels: Vec::new(), head_vs, head, head_opt }
    }
}

/// A new top layer, seeded by (seed, epoch) so that a resumed run draws the same one.
fn fresh_head(cfg: &TrainConfig, feature_dim: i64, device: Device, epoch: u64) -> (nn::VarStore, nn::Linear, Sgd) {
    tch::manual_seed(seed_of(&[cfg.seed, epoch, 0x70]) as i64 & i64::MAX);
    let vs = nn::VarStore::new(device);
    let head = linear_head(&(vs.root() / "top_layer"), feature_dim, cfg.clustering.k as i64, HeadInit::Normal001);
    let opt = Sgd::new(named_vars(&vs, ""), SgdConfig::new(0.0, cfg.weight_decay, false));
    (vs, head, opt)
}

impl Method for DeepCluster {
    fn name(&self) -> &'static str {
        "deepcluster"
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline { name: "deepcluster".into(), views: vec![train_view(&self.cfg)], mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, restored: bool) -> Result<SamplerKind> {
        if !(restored && self.labels.len() as u64 == ctx.records) {
            let previous = (!self.labels.is_empty()).then(|| std::mem::take(&mut self.labels));
            let a = cluster_epoch(ctx, &[self.cfg.clustering.k], None, previous.as_deref())?;
            self.labels = a.labels;
            (self.head_vs, self.head, self.head_opt) = fresh_head(&self.cfg, self.feature_dim, self.device, ctx.epoch);
        }
        Ok(SamplerKind::UniformOverLabels { labels: self.labels.clone(), reassign: self.cfg.clustering.reassign })
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let x = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let targets: Vec<i64> = batch.indices.iter().map(|&i| self.labels.get(i as usize).copied().unwrap_or(-1)).collect();
        if targets.iter().any(|&t| t < 0) {
            return Err(TrainError::Data("a sample without a pseudo-label reached the trainer".into()));
        }
        let logits = self.head.forward(&trunk.forward_t(&x, true).relu());
        let (loss, acc) = cross_entropy(&logits, &Tensor::from_slice(&targets).to_device(device).to_kind(Kind::Int64));
        Ok(StepOutput { loss, accuracy: Some(acc) })
    }

    fn parameters(&self) -> &[Tensor] {
        self.head_opt.params()
    }

    fn update(&mut self, lr: f64) {
        self.head_opt.step(lr);
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.head_vs, "");
        t.push(("labels".into(), Tensor::from_slice(&self.labels)));
        (t, json!({ "k": self.cfg.clustering.k }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, _json: &serde_json::Value) -> Result<()> {
        self.labels = Vec::<i64>::try_from(saved(tensors, "labels")?)?;
        restore_vars(&self.head_vs, tensors, "")
    }

    fn pseudo_labels(&self) -> Option<Vec<i64>> {
        Some(self.labels.clone())
    }
}
