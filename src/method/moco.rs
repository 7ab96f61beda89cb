//! MoCo v1 / v2 (methods.md §2.7, moco/builder.py): a query encoder (the trainer's trunk + a
//! projection head) and a key encoder (its own copy of both, an EMA of the query's parameters,
//! never trained), a queue of K negative keys, InfoNCE with target 0.
//!
//! Per batch: q = normalize(head_q(trunk(x_q))); then without gradient the key encoder moves
//! towards the query encoder (θ_k ← m·θ_k + (1 − m)·θ_q, parameters only; its BatchNorm buffers
//! follow its own forwards), x_k is shuffled, k = normalize(head_k(trunk_k(x_k))), unshuffled;
//! loss = CE([q·k, q·queue] / T, 0); after the update the keys are enqueued.
//!
//! Shuffle BN on one process: both encoders run the batch in `bn_splits` parts with their own
//! BatchNorm statistics (as that many GPUs would), and the key batch is permuted before being
//! cut (MoCo's colab does the same with SplitBatchNorm).
//!
//! v2 (`--method moco-v2`, or `--mlp --aug-plus --temperature 0.2 --schedule cosine`): MLP head,
//! aug+ views, T 0.2, cosine schedule.

use super::contrastive::{contrastive_pipeline, ema_update, forward_split, info_nce, keys_shuffled_across_ranks, l2_normalize, top1, HeadKind, Projection, Queue};
use super::{saved, EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Pipeline, SamplerKind};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::optim::Sgd;
use crate::train::run::build_trunk;
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

pub struct Moco {
    cfg: TrainConfig,
    /// The query encoder's projection head, trained with its own SGD (same settings as the
    /// trunk's).
    head_vs: nn::VarStore,
    head: Projection,
    head_opt: Sgd,
    /// The key encoder: trunk and head, each in its own store with the query's names.
    key_trunk_vs: nn::VarStore,
    key_trunk: Box<dyn Network>,
    key_head_vs: nn::VarStore,
    key_head: Projection,
    queue: Queue,
    /// (key tensor, query tensor) of every trainable parameter, from `attach`.
    pairs: Vec<(Tensor, Tensor)>,
    /// The key encoder holds weights (copied from the query, or restored).
    key_ready: bool,
    /// This step's keys, enqueued in `update` (after the backward pass that used the queue).
    pending: Option<Tensor>,
}

impl Moco {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Result<Self> {
        let c = &cfg.contrastive;
        let kind = if c.mlp { HeadKind::Mlp } else { HeadKind::Linear };
        tch::manual_seed(seed_of(&[cfg.seed, 0x3C0]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let head = Projection::new(&(head_vs.root() / "fc"), kind, feature_dim, c.dim);
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        let mut key_trunk_vs = nn::VarStore::new(device);
        let key_trunk = build_trunk(&key_trunk_vs, cfg)?;
        let mut key_head_vs = nn::VarStore::new(device);
        let key_head = Projection::new(&(key_head_vs.root() / "fc"), kind, feature_dim, c.dim);
        key_trunk_vs.freeze();
        key_head_vs.freeze();
        let queue = Queue::new(c.dim, c.queue.max(1) as i64, device);
        Ok(Moco { cfg: cfg.clone(), head_vs, head, head_opt, key_trunk_vs, key_trunk, key_head_vs, key_head, queue, pairs: Vec::new(), key_ready: false, pending: None })
    }

    fn name_of(&self) -> &'static str {
        if self.cfg.method == "moco-v2" {
            "moco-v2"
        } else {
            "moco"
        }
    }
}

/// (key, query) pairs by name: every query tensor in `query` must exist in `key`.
fn pair_up(key: &nn::VarStore, query: &[(String, Tensor)], what: &str) -> Result<Vec<(Tensor, Tensor, bool)>> {
    let kv = key.variables();
    query
        .iter()
        .map(|(n, q)| {
            let k = kv.get(n).ok_or_else(|| TrainError::Config(format!("the {what} key encoder lacks {n:?}")))?;
            if k.size() != q.size() {
                return Err(TrainError::Config(format!("{what} {n:?}: key {:?} vs query {:?}", k.size(), q.size())));
            }
            Ok((k.shallow_clone(), q.shallow_clone(), q.requires_grad()))
        })
        .collect()
}

impl Method for Moco {
    fn name(&self) -> &'static str {
        self.name_of()
    }

    fn pipeline(&self) -> Pipeline {
        let recipe = if self.cfg.contrastive.aug_plus { "moco-v2" } else { "moco-v1" };
        contrastive_pipeline(recipe, &self.cfg, 2)
    }

    fn attach(&mut self, trunk_vars: &[(String, Tensor)]) -> Result<()> {
        let mut all = pair_up(&self.key_trunk_vs, trunk_vars, "trunk")?;
        all.extend(pair_up(&self.key_head_vs, &named_vars(&self.head_vs, ""), "head")?);
        if !self.key_ready {
            // builder.py: param_k.data.copy_(param_q.data); buffers too (they match at init, and
            // a --pretrained trunk brings its own).
            tch::no_grad(|| {
                for (k, q, _) in &all {
                    k.shallow_clone().copy_(q);
                }
            });
            self.key_ready = true;
        }
        self.pairs = all.into_iter().filter(|p| p.2).map(|(k, q, _)| (k, q)).collect();
        Ok(())
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        Ok(super::instance_sampler(ctx))
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        if self.pairs.is_empty() {
            return Err(TrainError::Config("moco: the trainer did not attach the query encoder".into()));
        }
        let c = &self.cfg.contrastive;
        let x_q = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let x_k = batch.view_f32(1, IMAGENET_MEAN, IMAGENET_STD, device);
        let q = l2_normalize(&self.head.forward_t(&forward_split(trunk, &x_q, c.bn_splits, true), true));
        tch::no_grad(|| ema_update(&self.pairs, c.key_momentum));
        let encode = |x: &Tensor| tch::no_grad(|| l2_normalize(&self.key_head.forward_t(&forward_split(self.key_trunk.as_ref(), x, c.bn_splits, true), true)));
        let (k, all_keys) = match crate::dist::world() {
            // data-parallel: shuffle BN across the ranks, and every rank's keys join the queue
            Some(g) => keys_shuffled_across_ranks(&g, &x_k, &encode)?,
            None => {
                let n = x_k.size()[0];
                let k = if c.bn_splits > 1 {
                    let perm = Tensor::randperm(n, (Kind::Int64, device));
                    encode(&x_k.index_select(0, &perm)).index_select(0, &perm.argsort(0, false))
                } else {
                    encode(&x_k)
                };
                (k.shallow_clone(), k)
            }
        };
        let (loss, logits) = info_nce(&q, &k, &self.queue.keys, c.temperature);
        let acc = top1(&logits, &Tensor::zeros([logits.size()[0]], (Kind::Int64, device)));
        self.pending = Some(all_keys);
        Ok(StepOutput { loss, accuracy: Some(acc) })
    }

    fn parameters(&self) -> &[Tensor] {
        self.head_opt.params()
    }

    fn update(&mut self, lr: f64) {
        self.head_opt.step(lr);
        if let Some(k) = self.pending.take() {
            self.queue.enqueue(&k);
        }
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.head_vs, "head.");
        t.extend(self.head_opt.state("head_optim."));
        t.extend(named_vars(&self.key_trunk_vs, "key_trunk."));
        t.extend(named_vars(&self.key_head_vs, "key_head."));
        t.push(("queue".into(), self.queue.keys.shallow_clone()));
        (t, json!({ "queue_ptr": self.queue.ptr, "queue": self.queue.len(), "dim": self.cfg.contrastive.dim, "mlp": self.cfg.contrastive.mlp }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "head.")?;
        self.head_opt.load_state("head_optim.", tensors).map_err(TrainError::Config)?;
        restore_vars(&self.key_trunk_vs, tensors, "key_trunk.")?;
        restore_vars(&self.key_head_vs, tensors, "key_head.")?;
        let q = saved(tensors, "queue")?;
        if q.size() != self.queue.keys.size() {
            return Err(TrainError::Config(format!("checkpoint queue {:?}, this run's {:?} (--moco-k / --moco-dim changed?)", q.size(), self.queue.keys.size())));
        }
        tch::no_grad(|| self.queue.keys.copy_(q));
        self.queue.ptr = json["queue_ptr"].as_i64().ok_or_else(|| TrainError::Config("checkpoint lacks queue_ptr".into()))?;
        self.key_ready = true;
        Ok(())
    }
}
