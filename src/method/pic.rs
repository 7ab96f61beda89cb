//! PIC — parametric instance classification (Cao et al. 2020; methods.md §2.5, bl0/PIC): every
//! image is its own class of an N-way classifier. The trunk's features go through an MLP head
//! (contrast/resnet.py `mlp_head`: in → 2048, ReLU, → 128) and are L2-normalised; the classifier
//! is a matrix W ∈ R^{N×dim} (init N(0, 0.01)) whose rows are L2-normalised too, so the logits
//! are cosine similarities divided by τ (`--temperature`, 0.2), and the target of image i is i.
//! W is an ordinary parameter: SGD with momentum and weight decay (the trunk's settings), so
//! every row decays and keeps moving every step, as in the released code.
//!
//! From the released code (contrast/models/PIC.py, main_pretrain.py, contrast/data/*):
//! - the full softmax over all N rows (the default, `--negatives 0`);
//! - `--aug multicrop`: one large crop (scale `--crop2`..1) and `--num-crop2` small crops
//!   (`--image-size2` px, scale `--min-scale`..`--crop2`), each crop through the trunk on its own
//!   (its own BatchNorm statistics), the small crops' logits against W.detach() (they train the
//!   encoder only); cross-entropy averaged over all (1 + k)·B rows;
//! - the sliding-window scheduler (`--use-sliding-window-sampler`, `--window-size`,
//!   `--window-stride`): one epoch is one window, and the epoch count (and warm-up) is rescaled to
//!   ceil(epochs·N/D) by the command line (see [`window_epochs`]);
//! - `--cache-mode part` (the default upstream): the sampler draws only from this process's own
//!   contiguous shards (`SamplerKind::Part`); `full` / `no` shuffle over every record. With one
//!   process the three read the same records, in different orders; the raw-byte cache itself has
//!   no counterpart (shards are memory-mapped);
//! - lr 0.03 × B/256, momentum 0.9, wd 1e-4, cosine to 1e-6 per iteration after a linear
//!   warm-up from lr/100 over epochs/40.
//!
//! From the paper only (README "Known Issues": not in the released code), `--negatives K`: the
//! softmax of a step runs over the batch's own classes plus the K most recently visited
//! instances (a FIFO of record indices, the paper's "recent negative sampling"), so a step costs
//! O((B + K)·dim) instead of O(N·dim). Rows outside the softmax get no gradient; with weight
//! decay and momentum they would still move, so when a row enters the softmax again it first
//! receives the skipped momentum + weight-decay steps in closed form ([`LazyRowSgd`]; equal to
//! stepping every row every step, tested in tests/method_pic.rs). In a data-parallel run the
//! ranks gather each other's batch indices before the step ([`Method::plan_step`]): every rank
//! softmaxes over the same classes (all ranks' records, then the recent ones), the gradients of
//! those rows are averaged with the parameters', and every rank's records enter the FIFO — what
//! one process with the concatenated batch does.
//!
//! Deviations: the trunk is silt's (`--arch`; PIC's ResNets zero-init the last BN γ of each block,
//! silt's do not); the head sees ReLU(features) as every silt projection head does (a no-op on
//! ResNet average pools); no AMP; one process (the per-rank window is the whole window). The
//! sliding window is silt's stateless `SamplerKind::SlidingWindow`: an endless chain of
//! permutations, window e = chain positions e·S .. e·S + D, so each position is in D/S
//! consecutive windows — the intended semantics of methods.md, where a window that runs past the
//! end of one permutation continues into the next (freshly shuffled) one instead of wrapping
//! into the same permutation's head.

use super::contrastive::{contrastive_pipeline, feature_rows, l2_normalize, top1, BankInit, HeadKind, Projection};
use super::{saved, EpochContext, Method, StepOutput};
use crate::loader::presets::{IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::rng::seed_of;
use crate::loader::{Batch, Geometry, Pipeline, SamplerKind};
use crate::model::Network;
use crate::train::checkpoint::{named_vars, restore_vars};
use crate::train::config::TrainConfig;
use crate::train::error::{Result, TrainError};
use crate::train::optim::{LazyRowSgd, Sgd};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

/// PIC's settings (`silt train --method pic`); dimension and temperature are the contrastive
/// methods' `--feature-dim` and `--temperature`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PicConfig {
    /// Hidden width of the MLP head (upstream `mid_dim` 2048); 0 = one linear layer (upstream
    /// without `--mlp-head`).
    pub hidden: i64,
    /// `--aug multicrop`: one large crop plus `num_small` small crops.
    pub multicrop: bool,
    /// Side of the small crops (`--image-size2`).
    pub small_crop: u32,
    /// `--crop2`: smallest area of the large crop, largest of the small ones.
    pub crop2: f64,
    /// `--num-crop2`.
    pub num_small: usize,
    pub sliding_window: bool,
    pub window_size: u64,
    pub window_stride: u64,
    /// Recent negatives per step (0 = full softmax over all N).
    pub negatives: usize,
}

impl Default for PicConfig {
    fn default() -> Self {
        PicConfig {
            hidden: 2048,
            multicrop: false,
            small_crop: 96,
            crop2: 0.14,
            num_small: 3,
            sliding_window: false,
            window_size: 131072,
            window_stride: 16384,
            negatives: 0,
        }
    }
}

/// Epochs (windows) of a sliding-window run, as main_pretrain.py rescales them:
/// ceil(epochs·N/D). D is capped at N: the sampler never makes a window longer than the data
/// (upstream would repeat samples inside it), so a window larger than the data is one epoch.
pub fn window_epochs(epochs: f64, records: u64, window: u64) -> f64 {
    let d = window.min(records).max(1);
    (epochs * records as f64 / d as f64).ceil()
}

/// The default small-crop side: upstream's 96 px next to its 160-px large crop; for small
/// images the same ratio (28 → 17).
pub fn default_small_crop(crop: u32) -> u32 {
    if crop >= 160 {
        96
    } else {
        ((crop as f64 * 96.0 / 160.0).round() as u32).max(8)
    }
}

/// PIC.forward's logits: each large crop's features against the L2-normalised rows of `w`, then
/// each small crop's against `w.detach()`, all divided by τ, concatenated in that order. The
/// features are the head's raw outputs (normalised here, as PIC does).
pub fn pic_logits(large: &[Tensor], small: &[Tensor], w: &Tensor, temperature: f64) -> Tensor {
    let wn = l2_normalize(w);
    let wd = wn.detach();
    let mut parts: Vec<Tensor> = large.iter().map(|f| l2_normalize(f).mm(&wn.tr()) / temperature).collect();
    parts.extend(small.iter().map(|f| l2_normalize(f).mm(&wd.tr()) / temperature));
    Tensor::cat(&parts, 0)
}

/// PIC's loss: mean cross-entropy of [`pic_logits`] against `targets` repeated once per crop
/// (`y_idx.repeat(k + k_small)`). Returns (loss, logits).
pub fn pic_loss(large: &[Tensor], small: &[Tensor], w: &Tensor, targets: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let logits = pic_logits(large, small, w, temperature);
    let crops = (large.len() + small.len()) as i64;
    let t = targets.repeat([crops]);
    (logits.cross_entropy_for_logits(&t), logits)
}

/// The classes of a step with recent-negative sampling: the batch's own records, then the
/// recent ones not in the batch (each once). Returns (classes, the batch's positions in them).
pub fn sampled_classes(batch: &[i64], recent: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut pos: HashMap<i64, i64> = HashMap::with_capacity(batch.len() + recent.len());
    let mut classes = Vec::with_capacity(batch.len() + recent.len());
    for &r in batch.iter().chain(recent.iter().filter(|&&r| r >= 0)) {
        pos.entry(r).or_insert_with(|| {
            classes.push(r);
            classes.len() as i64 - 1
        });
    }
    let targets = batch.iter().map(|r| pos[r]).collect();
    (classes, targets)
}

/// The sampled-softmax state: the lazy optimiser of W, the FIFO of recently visited records and
/// the current step's plan.
struct Sampled {
    opt: LazyRowSgd,
    recent: Vec<i64>,
    ptr: usize,
    pending: Option<StepPlan>,
}

/// One step of the sampled softmax, the same on every rank: the classes (every rank's batch in
/// rank order, then the recent records), their rows of W as a leaf that receives the gradient,
/// this rank's targets among them, and every rank's records for the FIFO.
struct StepPlan {
    classes: Vec<i64>,
    w_sub: Tensor,
    targets: Vec<i64>,
    batch: Vec<i64>,
}

pub struct Pic {
    cfg: TrainConfig,
    device: Device,
    head_vs: nn::VarStore,
    head: Projection,
    /// Head parameters, and W itself with the full softmax.
    head_opt: Sgd,
    /// The instance classifier, one row per record in use; created at the first epoch (or
    /// restored).
    w: Option<Tensor>,
    sampled: Option<Sampled>,
}

impl Pic {
    pub fn new(cfg: &TrainConfig, feature_dim: i64, device: Device) -> Result<Self> {
        let p = &cfg.pic;
        if p.negatives > 0 && (cfg.nesterov || cfg.contrastive.lars) {
            return Err(TrainError::Config("pic --negatives: the closed-form catch-up of skipped rows needs plain momentum SGD (no Nesterov, no LARS)".into()));
        }
        if p.multicrop && (p.num_small == 0 || p.small_crop == 0 || !(p.crop2 > cfg.min_scale && p.crop2 < 1.0)) {
            return Err(TrainError::Config(format!(
                "pic --aug multicrop needs --num-crop2 > 0, --image-size2 > 0 and --min-scale < --crop2 < 1 (got {}, {}, {} / {})",
                p.num_small, p.small_crop, cfg.min_scale, p.crop2
            )));
        }
        tch::manual_seed(seed_of(&[cfg.seed, 0x91C]) as i64 & i64::MAX);
        let head_vs = nn::VarStore::new(device);
        let kind = if p.hidden > 0 { HeadKind::WideMlp { hidden: p.hidden } } else { HeadKind::Linear };
        let head = Projection::new(&(head_vs.root() / "head"), kind, feature_dim, cfg.contrastive.dim);
        let head_opt = Sgd::new(named_vars(&head_vs, ""), cfg.sgd());
        Ok(Pic { cfg: cfg.clone(), device, head_vs, head, head_opt, w: None, sampled: None })
    }

    /// Takes `w` as the classifier: with the full softmax it joins the head's optimiser (a
    /// parameter like any other); with sampled negatives it is stepped by a [`LazyRowSgd`].
    fn install(&mut self, w: Tensor) {
        let mut named = named_vars(&self.head_vs, "");
        if self.cfg.pic.negatives == 0 {
            let w = w.set_requires_grad(true);
            named.push(("W".into(), w.shallow_clone()));
            self.w = Some(w);
            self.sampled = None;
        } else {
            let (n, d) = (w.size()[0], w.size()[1]);
            self.sampled = Some(Sampled {
                opt: LazyRowSgd::new(n, d, self.cfg.momentum, self.cfg.weight_decay, self.device),
                recent: vec![-1; self.cfg.pic.negatives],
                ptr: 0,
                pending: None,
            });
            self.w = Some(w.set_requires_grad(false));
        }
        self.head_opt = Sgd::new(named, self.cfg.sgd());
    }

    /// The classifier with every row up to date (W is lazy with `--negatives`).
    pub fn classifier(&mut self) -> Option<Tensor> {
        let w = self.w.as_ref()?.shallow_clone();
        if let Some(s) = self.sampled.as_mut() {
            s.opt.catch_up_all(&w);
        }
        Some(w.detach())
    }
}

impl Method for Pic {
    fn name(&self) -> &'static str {
        "pic"
    }

    fn pipeline(&self) -> Pipeline {
        let mut p = contrastive_pipeline("pic", &self.cfg, 1);
        let pc = &self.cfg.pic;
        if pc.multicrop {
            let mut small = p.views[0].clone();
            small.count = pc.num_small;
            small.size = pc.small_crop;
            small.geometry = Geometry::RandomResized { scale: (self.cfg.min_scale, pc.crop2), ratio: (3.0 / 4.0, 4.0 / 3.0) };
            if let Geometry::RandomResized { scale, .. } = &mut p.views[0].geometry {
                *scale = (pc.crop2, 1.0);
            }
            p.views.push(small);
            p.name = "pic-multicrop".into();
        }
        p
    }

    fn begin_epoch(&mut self, ctx: &mut EpochContext, _restored: bool) -> Result<SamplerKind> {
        match &self.w {
            Some(w) if w.size()[0] as u64 != ctx.records => {
                return Err(TrainError::Config(format!("pic: the checkpoint's classifier has {} rows but the run uses {} records (--limit changed?)", w.size()[0], ctx.records)));
            }
            Some(_) => {}
            None => {
                tch::manual_seed(seed_of(&[self.cfg.seed, 0x91D]) as i64 & i64::MAX);
                let mut w = Tensor::randn([ctx.records as i64, self.cfg.contrastive.dim], (Kind::Float, self.device)) * 0.01;
                if self.cfg.contrastive.bank_init == BankInit::Features {
                    w = feature_rows(ctx, &self.head, w)?;
                }
                self.install(w);
            }
        }
        let p = &self.cfg.pic;
        Ok(if p.sliding_window {
            SamplerKind::SlidingWindow { window: p.window_size, stride: p.window_stride }
        } else {
            super::instance_sampler(ctx)
        })
    }

    fn step(&mut self, trunk: &dyn Network, batch: &Batch, device: Device) -> Result<StepOutput> {
        let w = self.w.as_ref().ok_or_else(|| TrainError::Config("pic: no classifier (begin_epoch not called)".into()))?.shallow_clone();
        let feats = |v: usize| self.head.forward_t(&trunk.forward_t(&batch.view_f32(v, IMAGENET_MEAN, IMAGENET_STD, device), true), true);
        let large = vec![feats(0)];
        let small: Vec<Tensor> = if self.cfg.pic.multicrop { (1..=self.cfg.pic.num_small).map(feats).collect() } else { Vec::new() };
        let y: Vec<i64> = batch.indices.iter().map(|&i| i as i64).collect();
        let b = y.len() as i64;
        let (loss, logits, targets) = match self.sampled.as_mut() {
            None => {
                let t = Tensor::from_slice(&y).to_device(device);
                let (loss, logits) = pic_loss(&large, &small, &w, &t, self.cfg.contrastive.temperature);
                (loss, logits, t)
            }
            Some(s) => {
                let plan = s.pending.as_ref().ok_or_else(|| TrainError::Config("pic --negatives: step without plan_step".into()))?;
                let t = Tensor::from_slice(&plan.targets).to_device(device);
                let (loss, logits) = pic_loss(&large, &small, &plan.w_sub, &t, self.cfg.contrastive.temperature);
                (loss, logits, t)
            }
        };
        let acc = top1(&logits.narrow(0, 0, b), &targets);
        Ok(StepOutput { loss, accuracy: Some(acc) })
    }

    fn parameters(&self) -> &[Tensor] {
        self.head_opt.params()
    }

    /// With `--negatives`: gathers every rank's batch (rank order), so that every rank softmaxes
    /// over the same classes — those of one process with the concatenated batch — brings their
    /// rows up to date and takes them as this step's leaf.
    fn plan_step(&mut self, batch: &Batch, device: Device) -> Result<()> {
        let (Some(s), Some(w)) = (self.sampled.as_mut(), self.w.as_ref()) else {
            return Ok(());
        };
        let local: Vec<i64> = batch.indices.iter().map(|&i| i as i64).collect();
        let (all, offset) = match crate::dist::world() {
            None => (local.clone(), 0),
            Some(g) => {
                let parts = g.all_gather_varying(&Tensor::from_slice(&local))?;
                let offset = parts[..g.rank()].iter().map(|p| p.size()[0] as usize).sum::<usize>();
                (Vec::<i64>::try_from(Tensor::cat(&parts, 0))?, offset)
            }
        };
        let (classes, positions) = sampled_classes(&all, &s.recent);
        s.opt.catch_up(w, &classes);
        let idx = Tensor::from_slice(&classes).to_device(device);
        let w_sub = w.index_select(0, &idx).detach().set_requires_grad(true);
        let targets = positions[offset..offset + local.len()].to_vec();
        s.pending = Some(StepPlan { classes, w_sub, targets, batch: all });
        Ok(())
    }

    fn step_leaves(&self) -> Vec<Tensor> {
        self.sampled.as_ref().and_then(|s| s.pending.as_ref()).map(|p| vec![p.w_sub.shallow_clone()]).unwrap_or_default()
    }

    fn update(&mut self, lr: f64) {
        self.head_opt.step(lr);
        if let (Some(s), Some(w)) = (self.sampled.as_mut(), self.w.as_ref()) {
            if let Some(StepPlan { classes, w_sub, batch, .. }) = s.pending.take() {
                let g = w_sub.grad();
                let g = if g.defined() { g } else { w_sub.zeros_like() };
                s.opt.step(w, &classes, &g, lr);
                // The batch joins the FIFO of recent instances (MoCo's queue, of row indices).
                let k = s.recent.len();
                for &r in batch.iter().skip(batch.len().saturating_sub(k)) {
                    s.recent[s.ptr] = r;
                    s.ptr = (s.ptr + 1) % k;
                }
            }
        }
    }

    fn state(&self) -> (Vec<(String, Tensor)>, serde_json::Value) {
        let mut t = named_vars(&self.head_vs, "");
        t.extend(self.head_opt.state("optim."));
        if let Some(w) = &self.w {
            t.push(("W".into(), w.detach()));
        }
        let mut ptr = None;
        if let Some(s) = &self.sampled {
            t.push(("lazy.buffer".into(), s.opt.buffer.shallow_clone()));
            t.push(("lazy.last".into(), Tensor::from_slice(&s.opt.last)));
            t.push(("lazy.lrs".into(), Tensor::from_slice(&s.opt.lrs)));
            t.push(("recent".into(), Tensor::from_slice(&s.recent)));
            ptr = Some(s.ptr);
        }
        (t, json!({ "negatives": self.cfg.pic.negatives, "recent_ptr": ptr, "dim": self.cfg.contrastive.dim }))
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, json: &serde_json::Value) -> Result<()> {
        restore_vars(&self.head_vs, tensors, "")?;
        let saved_negatives = json["negatives"].as_u64().unwrap_or(0) as usize;
        if saved_negatives != self.cfg.pic.negatives {
            return Err(TrainError::Config(format!("pic: the checkpoint was trained with --negatives {saved_negatives}, not {}", self.cfg.pic.negatives)));
        }
        if let Some(w) = tensors.get("W") {
            self.install(w.to_device(self.device).to_kind(Kind::Float));
        }
        self.head_opt.load_state("optim.", tensors).map_err(TrainError::Config)?;
        if let Some(s) = self.sampled.as_mut() {
            let ints = |name: &str| -> Result<Vec<i64>> { Vec::<i64>::try_from(saved(tensors, name)?.to_kind(Kind::Int64).reshape([-1])).map_err(TrainError::Torch) };
            let buffer = saved(tensors, "lazy.buffer")?;
            if buffer.size() != s.opt.buffer.size() {
                return Err(TrainError::Config(format!("pic: saved momentum of W has shape {:?}, W {:?}", buffer.size(), s.opt.buffer.size())));
            }
            s.opt.buffer = buffer.to_device(self.device).to_kind(Kind::Float);
            s.opt.last = ints("lazy.last")?;
            s.opt.lrs = Vec::<f64>::try_from(saved(tensors, "lazy.lrs")?.to_kind(Kind::Double).reshape([-1])).map_err(TrainError::Torch)?;
            s.recent = ints("recent")?;
            s.ptr = json["recent_ptr"].as_u64().unwrap_or(0) as usize;
            if s.recent.len() != self.cfg.pic.negatives || s.opt.last.len() as i64 != s.opt.buffer.size()[0] || s.ptr >= s.recent.len() {
                return Err(TrainError::Config("pic: the checkpoint's negative-sampling state does not fit this run".into()));
            }
        }
        Ok(())
    }
}
