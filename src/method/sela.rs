//! SeLa — self-labelling via simultaneous clustering and representation learning (Asano et al.,
//! ICLR 2020; methods.md §2.4, upstream yukimasano/self-label `main.py`, `sinkhornknopp.py`).
//!
//! `hc` linear heads (`top_layer0..`, feature_dim → `ncl`, N(0, 0.01) weights and zero bias as
//! SeLa's AlexNet initialises them) read the trunk's ReLU'd features. Every record i has one label
//! per head, `L[h, i]`; the loss of a batch is the mean over heads of the cross-entropy of head h
//! against `L[h, idx]`. The labels start exactly balanced and random (`L[h, i] = i mod K`, then a
//! seeded permutation per head) and are re-optimised at the sample counts
//! `t_j = (E + 1.01)·N·(j/(nopts − 1))²`, j = 0..nopts−1 (dense early, sparse late; the first at
//! 0, so the very first step already trains on labels of the random network): before a step,
//! when `steps done × batch size ≥` the next `t_j`, one label optimisation runs. It extracts the
//! trunk's features of every record, applies each head in float64,
//! `P = softmax(head_h(features))`, and solves the equipartition transport problem on `P^λ` with
//! SeLa's Sinkhorn-Knopp (`crate::cluster::sinkhorn::sela_labels`: stop when
//! `Σ|c/c_new − 1| ≤ 0.1`, checked every 10 iterations); `L[h] = argmax_k Q`. All heads are
//! re-labelled at every optimisation, as on ImageNet (SeLa's CIFAR code does one head per call).
//!
//! Equipartition is only approximate while the heads are close to their init: P is then nearly
//! uniform, the stopping rule is met within ~10 iterations and the argmax of the nearly uniform
//! transport plan can be lopsided (on Fashion-MNIST, 2000 records in 30 clusters: largest
//! clusters of 250-470 in the first epoch, 70-77 by the fourth). That is the upstream rule's
//! behaviour and is kept; the "cluster" metrics lines show the sizes at every relabelling.
//!
//! Deviations from the upstream code, and why:
//! - Upstream's `--epochs E` trains E + 1 epochs (`while epoch < E + 1`) and spreads the
//!   relabelling times over `(E + 1.01)·N` samples, so the last one falls just after the end.
//!   silt's `--epochs` counts the epochs trained, so the same times are
//!   `(epochs + 0.01)·N·(j/(nopts − 1))²`: the same spacing relative to the length of the run.
//! - Upstream computes P with the network as it trains (train mode: dropout on, BatchNorm on batch
//!   statistics) on the training augmentation (its pseudo-label loader *is* the training loader).
//!   silt uses the trainer's feature snapshot (eval mode, Resize + CenterCrop), the one DeepCluster
//!   clusters: labels then depend on the weights alone, not on augmentation draws or batch
//!   composition, which keeps a resumed run exact without saving RNG streams.
//! - The Sinkhorn iteration runs in log space (same fixed point, same stopping rule, no underflow
//!   of `P^λ` for confident predictions; see `cluster::sinkhorn`).
//! - Records that cannot be decoded take no part in the transport problem (N counts the
//!   decodable ones) and keep the label -1; the loader never yields them.
//!
//! The labelling step is a trainer hook ([`Method::before_step`]) because SeLa's schedule is
//! counted in samples and falls mid-epoch. The labels, heads, the heads' momentum and the number of
//! optimisations done are checkpointed, so a run killed at any step resumes exactly.

use super::contrastive::contrastive_pipeline;
use super::{saved, EpochContext, Method, StepOutput};
use crate::cluster::metrics;
use crate::cluster::sinkhorn::{sela_labels, SinkhornConfig, SinkhornResult};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::{seed_of, Rng};
use crate::loader::{Batch, Geometry, Pipeline, SamplerKind, ViewSpec};
use crate::model::heads::{linear_head, HeadInit};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::features::extract;
use crate::train::optim::Sgd;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// SeLa's settings (`silt train --method sela`), with the defaults of upstream's `main.py` flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SelaConfig {
    /// Number of heads (`--hc`; flag default 1, the ImageNet scripts use 10).
    pub hc: usize,
    /// Clusters per head (`--ncl`; 3000).
    pub ncl: usize,
    /// Number of label optimisations over the run (`--nopts`; 100).
    pub nopts: usize,
    /// The exponent λ on the probabilities (`--lamb`; 25, CIFAR 10).
    pub lambda: f64,
    /// Sinkhorn stops at Σ|c/c_new − 1| ≤ this (0.1; SeLa's CIFAR code 0.01).
    pub tol: f64,
    /// Augmentation level (`--augs`): 0 Resize + CenterCrop, 1 the same + flip, 2
    /// RandomResizedCrop + flip, 3 RandomResizedCrop + grayscale (p .2) + ColorJitter(.4,.4,.4,.4)
    /// + flip (the default).
    pub augs: u8,
}

impl Default for SelaConfig {
    fn default() -> Self {
        SelaConfig { hc: 1, ncl: 3000, nopts: 100, lambda: 25.0, tol: 0.1, augs: 3 }
    }
}

/// The sample counts at which SeLa re-optimises the labels, ascending:
/// `(epochs + 0.01)·N·(j/(nopts − 1))²`, j = 0..nopts (upstream `(E + 1.01)·N·linspace(0, 1,
/// nopts)²` with E = epochs − 1, see the module notes). `nopts` = 1 gives the single time 0.
pub fn relabel_times(epochs: u64, records: u64, nopts: usize) -> Vec<f64> {
    let span = (epochs as f64 + 0.01) * records as f64;
    match nopts {
        0 => Vec::new(),
        1 => vec![0.0],
        _ => (0..nopts).map(|j| span * (j as f64 / (nopts - 1) as f64).powi(2)).collect(),
    }
}

/// Whether the next label optimisation (the `done`-th, 0-based) is due before step `step` (0-based,
/// counted over the run): upstream `if niter * batch_size >= optimize_times[-1]`, one per step.
pub fn relabel_due(times: &[f64], done: usize, step: u64, batch_size: usize) -> bool {
    times.get(done).is_some_and(|&t| (step * batch_size as u64) as f64 >= t)
}

/// SeLa's initial labels for one head: `i mod k` for record i, randomly permuted (every cluster
/// gets ⌊N/k⌋ or ⌈N/k⌉ records), seeded by (seed, head).
pub fn balanced_random_labels(records: usize, k: usize, seed: u64, head: usize) -> Vec<i64> {
    let mut labels: Vec<i64> = (0..records).map(|i| (i % k.max(1)) as i64).collect();
    Rng::for_stream(&[seed, head as u64, 0x5E1A]).shuffle(&mut labels);
    labels
}

/// The mean over heads of the cross-entropy of `logits[h]` against `targets[h]`, and the mean
/// top-1 accuracy over heads (SeLa `main.py`: `torch.mean(torch.stack([XE(final[h], L[h,
/// selected]) ...]))`).
pub fn multi_head_loss(logits: &[Tensor], targets: &[Tensor]) -> (Tensor, f64) {
    let mut losses = Vec::with_capacity(logits.len());
    let mut acc = 0.0;
    for (l, t) in logits.iter().zip(targets) {
        let (loss, a) = super::cross_entropy(l, t);
        losses.push(loss);
        acc += a;
    }
    (Tensor::stack(&losses, 0).mean(Kind::Float), acc / logits.len().max(1) as f64)
}

/// One label optimisation: for every head (weight [K, D], bias [K]) the logits of `features`
/// (N × D, what the heads read, i.e. after the ReLU) in float64, softmax, Sinkhorn on P^λ
/// (SeLa `cpu_sk` / `optimize_L_sk`). Runs on the features' device.
pub fn optimize_labels(features: &Tensor, heads: &[(Tensor, Tensor)], cfg: &SinkhornConfig) -> Result<Vec<SinkhornResult>> {
    // Rows are cast to float64 a block at a time: a float64 copy of all features (1.28M × 4096 for
    // ImageNet AlexNet) would double the memory the snapshot already takes.
    const ROWS: i64 = 1 << 16;
    let dev = features.device();
    heads
        .iter()
        .map(|(w, b)| {
            let (wd, bd) = (w.to_device(dev).to_kind(Kind::Double), b.to_device(dev).to_kind(Kind::Double));
            let blocks: Vec<Tensor> = tch::no_grad(|| features.split(ROWS, 0).iter().map(|x| x.to_kind(Kind::Double).matmul(&wd.tr()) + &bd).collect());
            Ok(sela_labels(&Tensor::cat(&blocks, 0), cfg)?)
        })
        .collect()
}

/// Hard cap on Sinkhorn iterations per head (reaching it is logged as a warning).
const SINKHORN_MAX_ITERS: usize = 200_000;

pub struct Sela {
    cfg: TrainConfig,
    /// L[h][i]: label of record i for head h (-1: record not decodable). Empty until the first
    /// epoch knows how many records there are.
    labels: Vec<Vec<i64>>,
    /// Label optimisations done so far (index of the next relabelling time).
    relabels: usize,
    head_vs: nn::VarStore,
    heads: Vec<nn::Linear>,
    head_opt: Sgd,
}

impl Sela {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Result<Self> {
        let s = &cfg.sela;
        if s.hc == 0 || s.ncl < 2 {
            return Err(TrainError::Config(format!("sela needs at least one head and two clusters (--hc {}, --ncl {})", s.hc, s.ncl)));
        }
        // written so that NaN fails too
        let valid = s.lambda > 0.0 && s.lambda.is_finite() && s.tol > 0.0;
        if !valid {
            return Err(TrainError::Config(format!("sela: --lamb must be positive and finite (got {}), the Sinkhorn tolerance positive (got {})", s.lambda, s.tol)));
        }
        if s.augs > 3 {
            return Err(TrainError::Config(format!("sela: --augs is 0, 1, 2 or 3, not {}", s.augs)));
        }
        tch::manual_seed(seed_of(&[cfg.seed, 0x5E]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let heads = (0..s.hc).map(|h| linear_head(&(head_vs.root() / format!("top_layer{h}")), feature_dim, s.ncl as i64, HeadInit::Normal001)).collect();
        // Upstream has one SGD over the network and the heads: same rate, momentum and decay.
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        Ok(Sela { cfg: cfg.clone(), labels: Vec::new(), relabels: 0, head_vs, heads, head_opt })
    }

    fn sinkhorn_config(&self) -> SinkhornConfig {
        // Upstream iterates until the error criterion holds, with no cap. Trained heads with λ 25
        // need thousands of iterations (~7000 measured on Fashion-MNIST), close to the module's
        // default cap of 10 000, so the cap here only guards against a loop that never ends.
        SinkhornConfig { lambda: self.cfg.sela.lambda, tol: self.cfg.sela.tol, max_iters: SINKHORN_MAX_ITERS }
    }

    /// Re-labels every head from the current trunk and logs how good the labels are.
    fn relabel(&mut self, ctx: &mut EpochContext, step: u64, time: f64) -> Result<()> {
        let started = std::time::Instant::now();
        let fs = extract(ctx.trunk, ctx.ds, ctx.records, &ctx.extract)?;
        let rows = fs.valid_rows();
        let k = self.cfg.sela.ncl;
        if rows.len() < k {
            return Err(TrainError::Config(format!("sela: {} decodable records cannot fill {k} equal clusters (--ncl)", rows.len())));
        }
        let x = fs.features.index_select(0, &Tensor::from_slice(&rows)).to_device(ctx.extract.device).relu();
        let heads: Vec<(Tensor, Tensor)> = self.heads.iter().map(|l| (l.ws.detach(), l.bs.as_ref().map_or_else(|| Tensor::zeros([k as i64], (Kind::Float, l.ws.device())), |b| b.detach()))).collect();
        let results = optimize_labels(&x, &heads, &self.sinkhorn_config())?;
        for (h, r) in results.iter().enumerate() {
            if r.error > self.cfg.sela.tol {
                tracing::warn!("sela head {h}: Sinkhorn stopped at its cap of {} iterations with error {:.3} > {}", r.iterations, r.error, self.cfg.sela.tol);
            }
        }
        let previous = std::mem::take(&mut self.labels);
        self.labels = results
            .iter()
            .map(|r| {
                let mut l = vec![-1i64; ctx.records as usize];
                for (&row, &v) in rows.iter().zip(&r.labels) {
                    l[row as usize] = v;
                }
                l
            })
            .collect();
        let truth: Vec<i64> = fs.labels.iter().zip(&fs.valid).map(|(&l, &v)| if v { l } else { -1 }).collect();
        self.log_relabel(ctx, step, time, &results, &truth, previous.first().map(Vec::as_slice), started.elapsed().as_secs_f64())
    }

    /// A "cluster" line: head 0's NMI/AMI/ARI/accuracy vs the true labels (when the data has them)
    /// and its sizes at the top level (what `silt report` plots), every head's figures, Sinkhorn
    /// iterations and error under "heads", and the mean NMI between heads (SeLa's README).
    #[allow(clippy::too_many_arguments)]
    fn log_relabel(&self, ctx: &mut EpochContext, step: u64, time: f64, results: &[SinkhornResult], truth: &[i64], previous: Option<&[i64]>, seconds: f64) -> Result<()> {
        let k = self.cfg.sela.ncl;
        let mut heads = Vec::with_capacity(self.labels.len());
        for (labels, r) in self.labels.iter().zip(results) {
            let used: Vec<i64> = labels.iter().copied().filter(|&l| l >= 0).collect();
            let sizes = metrics::cluster_sizes(&used, k)?;
            let mut h = json!({
                "sinkhorn_iterations": r.iterations, "sinkhorn_error": r.error,
                "min_size": sizes.iter().min(), "max_size": sizes.iter().max(),
                "used_clusters": sizes.iter().filter(|&&s| s > 0).count(),
            });
            let pairs: Vec<(i64, i64)> = truth.iter().zip(labels).filter(|(&t, &p)| t >= 0 && p >= 0).map(|(&t, &p)| (t, p)).collect();
            if !pairs.is_empty() {
                let (t, p): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
                let rep = metrics::report(&t, &p)?;
                h["nmi_labels"] = json!(rep.nmi);
                h["ami_labels"] = json!(rep.ami);
                h["ari_labels"] = json!(rep.ari);
                h["accuracy_labels"] = json!(rep.accuracy);
            }
            h["sizes"] = json!(sizes);
            heads.push(h);
        }
        let mut between = Vec::new();
        for a in 0..self.labels.len() {
            for b in a + 1..self.labels.len() {
                between.extend(super::clustering::nmi_between(&self.labels[a], &self.labels[b]));
            }
        }
        let mut fields = json!({
            "method": "sela", "epoch": ctx.epoch, "step": step, "relabel": self.relabels, "samples": time, "k": k,
            "heads_count": self.labels.len(), "seconds": seconds, "heads": heads,
            "nmi_between_heads": if between.is_empty() { None } else { Some(between.iter().sum::<f64>() / between.len() as f64) },
        });
        for key in ["nmi_labels", "ami_labels", "ari_labels", "accuracy_labels", "sizes"] {
            let v = fields["heads"][0][key].clone();
            if !v.is_null() {
                fields[key] = v;
            }
        }
        if let Some(v) = previous.and_then(|p| super::clustering::nmi_between(p, &self.labels[0])) {
            fields["nmi_prev"] = json!(v);
        }
        let h0 = &fields["heads"][0];
        tracing::info!(
            "sela relabel {} at step {step} ({:.1}s): head 0 NMI {:.3}, Sinkhorn {} iterations, error {:.3}, sizes {}..{}",
            self.relabels,
            seconds,
            h0["nmi_labels"].as_f64().unwrap_or(f64::NAN),
            h0["sinkhorn_iterations"],
            h0["sinkhorn_error"].as_f64().unwrap_or(f64::NAN),
            h0["min_size"],
            h0["max_size"]
        );
        ctx.log.write("cluster", fields).map_err(|e| TrainError::Io { path: ctx.log.path().to_path_buf(), source: e })
    }
}

impl Method for Sela {
    fn name(&self) -> &'static str {
        "sela"
    }

    fn pipeline(&self) -> Pipeline {
        let augs = self.cfg.sela.augs;
        if augs == 3 {
            // SeLa data.py augs=3 is InstDisc's / MoCo v1's recipe (gray, then jitter .4 x 4, flip)
            // with RandomResizedCrop's default scale; the run's --min-scale sets it.
            let mut p = contrastive_pipeline("moco-v1", &self.cfg, 1);
            p.name = "sela".into();
            return p;
        }
        let crop = self.cfg.crop;
        let view = match augs {
            2 => ViewSpec::rrc(1, crop, (self.cfg.min_scale, 1.0)),
            // 0 and 1: Resize(crop·256/224) + CenterCrop(crop), with a flip for 1.
            _ => {
                let resize = (crop as f64 * 256.0 / 224.0).round() as u32;
                ViewSpec { geometry: Geometry::ResizeCenter { resize }, flip: if augs == 1 { 0.5 } else { 0.0 }, ..ViewSpec::rrc(1, crop, (1.0, 1.0)) }
            }
        };
        Pipeline { name: "sela".into(), views: vec![view], mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        let n = ctx.records as usize;
        if self.labels.first().is_none_or(Vec::is_empty) {
            let s = &self.cfg.sela;
            self.labels = (0..s.hc).map(|h| balanced_random_labels(n, s.ncl, self.cfg.seed, h)).collect();
        } else if self.labels.iter().any(|l| l.len() != n) {
            return Err(TrainError::Config(format!("sela: the checkpoint's labels cover {} records, the run uses {n}", self.labels[0].len())));
        }
        Ok(super::instance_sampler(ctx))
    }

    fn before_step(&mut self, ctx: &mut EpochContext, step: u64) -> Result<()> {
        let times = relabel_times(self.cfg.epochs, ctx.records, self.cfg.sela.nopts);
        // At most one optimisation per step, as upstream pops one time per iteration.
        if relabel_due(&times, self.relabels, step, self.cfg.batch_size) {
            self.relabel(ctx, step, times[self.relabels])?;
            self.relabels += 1;
        }
        Ok(())
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let x = batch.view_f32(0, IMAGENET_MEAN, IMAGENET_STD, device);
        let mut targets = Vec::with_capacity(self.labels.len());
        for l in &self.labels {
            let t: Vec<i64> = batch.indices.iter().map(|&i| l.get(i as usize).copied().unwrap_or(-1)).collect();
            if t.iter().any(|&v| v < 0) {
                return Err(TrainError::Data("a sample without a pseudo-label reached the trainer".into()));
            }
            targets.push(Tensor::from_slice(&t).to_device(device));
        }
        let f = trunk.forward_t(&x, true).relu();
        let logits: Vec<Tensor> = self.heads.iter().map(|h| h.forward(&f)).collect();
        let (loss, acc) = multi_head_loss(&logits, &targets);
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
        t.extend(self.head_opt.state("optim."));
        let (hc, n) = (self.heads.len() as i64, self.labels.first().map_or(0, Vec::len) as i64);
        t.push(("labels".into(), Tensor::from_slice(&self.labels.concat()).view([hc, n])));
        (t, json!({ "relabels": self.relabels, "hc": self.cfg.sela.hc, "ncl": self.cfg.sela.ncl }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "")?;
        self.head_opt.load_state("optim.", tensors).map_err(TrainError::Config)?;
        self.relabels = json["relabels"].as_u64().ok_or_else(|| TrainError::Config("checkpoint: sela state lacks \"relabels\"".into()))? as usize;
        // Checkpoints are only taken inside or after an epoch, when the labels exist.
        let l = saved(tensors, "labels")?;
        let size = l.size();
        if size.len() != 2 || size[0] != self.heads.len() as i64 {
            return Err(TrainError::Config(format!("checkpoint: sela labels have shape {size:?}, expected [{}, records]", self.heads.len())));
        }
        self.labels = (0..size[0]).map(|h| Vec::<i64>::try_from(&l.get(h))).collect::<std::result::Result<_, _>>()?;
        Ok(())
    }

    fn pseudo_labels(&self) -> Option<Vec<i64>> {
        self.labels.first().cloned()
    }
}
