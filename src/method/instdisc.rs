//! InstDisc — non-parametric instance discrimination (methods.md §2.6, lemniscate.pytorch): every
//! image is its own class, represented by a memory-bank row V_i (L2-normalised 128-d). The
//! trunk's features go through a linear (or `--mlp`) head to 128-d and are L2-normalised.
//!
//! `--nce-k K` (default 4096): NCE against K noise rows drawn uniformly per sample, P(i|f) =
//! exp(V_i·f/T)/Z with Z fixed at the first batch (NCEAverage + NCECriterion). `--nce-k 0`: full
//! softmax over the whole bank (LinearAverage + cross-entropy). After each step the batch's rows
//! move towards its features: V_i ← normalise(m·V_i + (1 − m)·f_i), m = `--nce-m` 0.5.

use super::contrastive::{bank_softmax, feature_rows, BankInit, contrastive_pipeline, gather_from_ranks, l2_normalize, nce_loss, nce_probs, sample_noise, top1, HeadKind, MemoryBank};
use super::{saved, EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Pipeline, SamplerKind};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::optim::Sgd;
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

use super::contrastive::Projection;

pub struct InstDisc {
    cfg: TrainConfig,
    device: Device,
    head_vs: nn::VarStore,
    head: Projection,
    head_opt: Sgd,
    /// One row per record in use; created at the first epoch (or restored).
    bank: Option<MemoryBank>,
    /// NCE normaliser, fixed at the first batch.
    z: Option<f64>,
    /// (record indices, features) of the last step, written into the bank in `update`.
    pending: Option<(Tensor, Tensor)>,
}

impl InstDisc {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Self {
        let kind = if cfg.contrastive.mlp { HeadKind::Mlp } else { HeadKind::Linear };
        tch::manual_seed(seed_of(&[cfg.seed, 0x1D0]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let head = Projection::new(&(head_vs.root() / "fc"), kind, feature_dim, cfg.contrastive.dim);
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        InstDisc { cfg: cfg.clone(), device, head_vs, head, head_opt, bank: None, z: None, pending: None }
    }
}

impl Method for InstDisc {
    fn name(&self) -> &'static str {
        "instdisc"
    }

    fn pipeline(&self) -> Pipeline {
        contrastive_pipeline("moco-v1", &self.cfg, 1)
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        if self.bank.as_ref().is_none_or(|b| b.len() as u64 != ctx.records) {
            tch::manual_seed(seed_of(&[self.cfg.seed, 0x1D1]) as i64 & i64::MAX);
            let mut bank = MemoryBank::new(ctx.records as i64, self.cfg.contrastive.dim, self.cfg.contrastive.nce_m, self.device);
            if self.cfg.contrastive.bank_init == BankInit::Features {
                bank.bank = feature_rows(ctx, &self.head, bank.bank)?;
            }
            self.bank = Some(bank);
            self.z = None;
        }
        Ok(super::instance_sampler(ctx))
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let c = &self.cfg.contrastive;
        let bank = self.bank.as_ref().ok_or_else(|| TrainError::Config("instdisc: no memory bank (begin_epoch not called)".into()))?;
        let x = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let y = Tensor::from_slice(&batch.indices.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(device);
        let f = l2_normalize(&self.head.forward_t(&trunk.forward_t(&x, true), true));
        let n = bank.len();
        let (loss, acc) = if c.nce_k > 0 {
            let idx = sample_noise(&y, c.nce_k as i64, n);
            let (mut probs, mut z) = nce_probs(&f, &bank.gather(&idx), c.temperature, self.z, n);
            if let (None, Some(g)) = (self.z, crate::dist::world()) {
                // the normaliser every rank uses is the mean of the ranks' first estimates
                let mean = g.all_reduce_f64(z, crate::dist::ReduceOp::Avg)?;
                probs = probs * (z / mean);
                z = mean;
            }
            self.z = Some(z);
            let acc = top1(&probs, &Tensor::zeros([probs.size()[0]], (Kind::Int64, device)));
            (nce_loss(&probs, n), acc)
        } else {
            let (loss, logits) = bank_softmax(&f, &bank.bank, &y, c.temperature);
            (loss, top1(&logits, &y))
        };
        // every rank's rows go into every rank's bank, so the banks stay identical
        self.pending = Some((gather_from_ranks(&y)?, gather_from_ranks(&f)?));
        Ok(StepOutput { loss, accuracy: Some(acc) })
    }

    fn parameters(&self) -> &[Tensor] {
        self.head_opt.params()
    }

    fn update(&mut self, lr: f64) {
        self.head_opt.step(lr);
        if let (Some((y, f)), Some(bank)) = (self.pending.take(), self.bank.as_mut()) {
            bank.update(&y, &f);
        }
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.head_vs, "");
        t.extend(self.head_opt.state("optim."));
        if let Some(b) = &self.bank {
            t.push(("memory".into(), b.bank.shallow_clone()));
        }
        (t, json!({ "z": self.z, "nce_k": self.cfg.contrastive.nce_k }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "")?;
        self.head_opt.load_state("optim.", tensors).map_err(TrainError::Config)?;
        let m = saved(tensors, "memory")?;
        self.bank = Some(MemoryBank { bank: m.to_device(self.device).to_kind(Kind::Float), momentum: self.cfg.contrastive.nce_m });
        self.z = json["z"].as_f64();
        Ok(())
    }
}
