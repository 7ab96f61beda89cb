//! DeeperCluster (methods.md §2.2) on one process: hierarchical clustering into `nsc`
//! super-clusters (S/4 with rotation, else S) and k/nsc sub-clusters inside each, redone every
//! `reassignment` epochs; each sample is rotated by 90°·r and trained with
//! CE(sub_head_c(h), sub-cluster) + CE(super_head(h), 4c + r).
//!
//! Upstream, rank groups fix (c, r): group g = 4c + r sees only super-cluster c at rotation r and
//! holds sub-head c. Here one process sees every group: r is drawn per sample from (seed, epoch,
//! record), the sub-loss of each super-cluster present in the batch is weighted by its share of
//! the batch, and all sub-heads live side by side. With `--super-classes 1 --no-rotnet` this is
//! DeepCluster; with `--super-classes 4 --k 1` it is RotNet (the README's special cases).

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
use crate::train::optim::Sgd;
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, nn::Module, Device, Kind, Tensor};

pub struct DeeperCluster {
    cfg: TrainConfig,
    feature_dim: i64,
    device: Device,
    /// Super-clusters (level 1).
    nsc: usize,
    /// Sub-clusters per super-cluster (level 2).
    sub_k: usize,
    /// Super-cluster of every record (-1: not decodable).
    parents: Vec<i64>,
    /// Sub-cluster of every record inside its super-cluster.
    subs: Vec<i64>,
    heads: Heads,
    /// The epoch being trained (salts the per-sample rotations).
    epoch: u64,
}

struct Heads {
    vs: nn::VarStore,
    super_head: Option<nn::Linear>,
    sub_heads: Vec<nn::Linear>,
    opt: Sgd,
}

impl DeeperCluster {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Result<Self> {
        let c = &cfg.clustering;
        let s = c.super_classes.max(1);
        let nsc = if c.rotnet {
            if !s.is_multiple_of(4) {
                return Err(TrainError::Config(format!("deepercluster: with rotation, --super-classes ({s}) must be a multiple of 4")));
            }
            s / 4
        } else {
            s
        };
        if !c.k.is_multiple_of(nsc) || c.k < nsc {
            return Err(TrainError::Config(format!("deepercluster: --k ({}) must be a multiple of the {nsc} super-clusters", c.k)));
        }
        let sub_k = c.k / nsc;
        let heads = Heads::fresh(cfg, feature_dim, device, s, nsc, sub_k, 0);
        Ok(DeeperCluster { cfg: cfg.clone(), feature_dim, device, nsc, sub_k, parents: Vec::new(), subs: Vec::new(), heads, epoch: 0 })
    }

    fn super_classes(&self) -> usize {
        self.cfg.clustering.super_classes.max(1)
    }

    /// Global cluster id of every record (parent × sub_k + sub), for the sampler and export.
    fn global_labels(&self) -> Vec<i64> {
        self.parents.iter().zip(&self.subs).map(|(&p, &s)| if p < 0 || s < 0 { -1 } else { p * self.sub_k as i64 + s }).collect()
    }

    /// The rotation of record `index` in `epoch` (0 without rotation).
    fn rotation(&self, epoch: u64, index: u64) -> i64 {
        if self.cfg.clustering.rotnet {
            (seed_of(&[self.cfg.seed, epoch, index, 0x40]) % 4) as i64
        } else {
            0
        }
    }
}

impl Heads {
    /// Super-class head Linear(d, S) when S > 1, one sub-class head Linear(d, k/nsc) per
    /// super-cluster when k/nsc > 1; PyTorch's default init and a fresh SGD, as DRC rebuilds them.
    fn fresh(cfg: &TrainConfig, d: i64, device: Device, s: usize, nsc: usize, sub_k: usize, epoch: u64) -> Heads {
        tch::manual_seed(seed_of(&[cfg.seed, epoch, 0x5C]) as i64 & i64::MAX);
        let vs = nn::VarStore::new(device);
        let super_head = (s > 1).then(|| linear_head(&(vs.root() / "super_head"), d, s as i64, HeadInit::TorchDefault));
        let sub_heads = if sub_k > 1 { (0..nsc).map(|c| linear_head(&(vs.root() / "sub_heads" / c), d, sub_k as i64, HeadInit::TorchDefault)).collect() } else { Vec::new() };
        let opt = Sgd::new(named_vars(&vs, ""), cfg.sgd());
        Heads { vs, super_head, sub_heads, opt }
    }
}

impl Method for DeeperCluster {
    fn name(&self) -> &'static str {
        "deepercluster"
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline { name: "deepercluster".into(), views: vec![train_view(&self.cfg)], mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, restored: bool) -> Result<SamplerKind> {
        self.epoch = ctx.epoch;
        let have = self.parents.len() as u64 == ctx.records;
        let due = ctx.epoch.is_multiple_of(self.cfg.clustering.reassignment.max(1));
        if !have || (due && !restored) {
            let previous = have.then(|| self.global_labels());
            let levels: Vec<usize> = [self.nsc, self.sub_k].into_iter().filter(|&l| l > 1).collect();
            if levels.is_empty() {
                self.parents = vec![0; ctx.records as usize];
                self.subs = vec![0; ctx.records as usize];
            } else {
                let a = cluster_epoch(ctx, &levels, Some(1e-5), previous.as_deref())?;
                let (parents, subs) = match (self.nsc > 1, self.sub_k > 1) {
                    (true, true) => {
                        let parents = a.parents.clone().unwrap_or_default();
                        let subs = a.labels.iter().zip(&parents).map(|(&l, &p)| if l < 0 { -1 } else { l - p * self.sub_k as i64 }).collect();
                        (parents, subs)
                    }
                    (true, false) => (a.labels.clone(), a.labels.iter().map(|&l| if l < 0 { -1 } else { 0 }).collect()),
                    _ => (a.labels.iter().map(|&l| if l < 0 { -1 } else { 0 }).collect(), a.labels.clone()),
                };
                self.parents = parents;
                self.subs = subs;
            }
            self.heads = Heads::fresh(&self.cfg, self.feature_dim, self.device, self.super_classes(), self.nsc, self.sub_k, ctx.epoch);
        }
        Ok(SamplerKind::UniformOverLabels { labels: self.global_labels(), reassign: self.cfg.clustering.reassign })
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let epoch = self.epoch;
        let mut x = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let n = batch.len();
        let rot: Vec<i64> = batch.indices.iter().map(|&i| self.rotation(epoch, i)).collect();
        for r in 1..4 {
            let rows: Vec<i64> = (0..n as i64).filter(|&j| rot[j as usize] == r).collect();
            if !rows.is_empty() {
                let idx = Tensor::from_slice(&rows).to_device(device);
                let turned = x.index_select(0, &idx).rot90(r, [2, 3]);
                x = x.index_copy(0, &idx, &turned);
            }
        }
        let h = trunk.forward_t(&x, true).relu();
        let parents: Vec<i64> = batch.indices.iter().map(|&i| self.parents.get(i as usize).copied().unwrap_or(-1)).collect();
        let subs: Vec<i64> = batch.indices.iter().map(|&i| self.subs.get(i as usize).copied().unwrap_or(-1)).collect();
        if parents.iter().chain(&subs).any(|&v| v < 0) {
            return Err(TrainError::Data("a sample without a cluster assignment reached the trainer".into()));
        }
        let mut loss = Tensor::zeros([], (Kind::Float, device));
        let mut accuracy = None;
        if let Some(head) = &self.heads.super_head {
            let rotations = if self.cfg.clustering.rotnet { 4 } else { 1 };
            let targets: Vec<i64> = parents.iter().zip(&rot).map(|(&c, &r)| c * rotations + r).collect();
            let (l, acc) = cross_entropy(&head.forward(&h), &Tensor::from_slice(&targets).to_device(device));
            loss = loss + l;
            accuracy = Some(acc);
        }
        for (c, head) in self.heads.sub_heads.iter().enumerate() {
            let rows: Vec<i64> = (0..n as i64).filter(|&j| parents[j as usize] == c as i64).collect();
            if rows.is_empty() {
                continue;
            }
            let idx = Tensor::from_slice(&rows).to_device(device);
            let targets: Vec<i64> = rows.iter().map(|&j| subs[j as usize]).collect();
            let (l, _) = cross_entropy(&head.forward(&h.index_select(0, &idx)), &Tensor::from_slice(&targets).to_device(device));
            loss = loss + l * (rows.len() as f64 / n as f64);
        }
        Ok(StepOutput { loss, accuracy })
    }

    fn parameters(&self) -> &[Tensor] {
        self.heads.opt.params()
    }

    fn update(&mut self, lr: f64) {
        self.heads.opt.step(lr);
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.heads.vs, "");
        t.extend(self.heads.opt.state("optim."));
        t.push(("parents".into(), Tensor::from_slice(&self.parents)));
        t.push(("subs".into(), Tensor::from_slice(&self.subs)));
        (t, json!({ "super_clusters": self.nsc, "sub_clusters": self.sub_k }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, _json: &serde_json::Value) -> Result<()> {
        self.parents = Vec::<i64>::try_from(saved(tensors, "parents")?)?;
        self.subs = Vec::<i64>::try_from(saved(tensors, "subs")?)?;
        restore_vars(&self.heads.vs, tensors, "")?;
        self.heads.opt.load_state("optim.", tensors).map_err(TrainError::Config)?;
        Ok(())
    }

    fn pseudo_labels(&self) -> Option<Vec<i64>> {
        Some(self.global_labels())
    }
}
