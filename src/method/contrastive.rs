//! What the instance-discrimination methods (InstDisc, MoCo v1/v2, SimCLR; methods.md §2.6–2.8)
//! share: their settings, projection heads (§1.9), L2-normalised temperature-scaled logits, the
//! InfoNCE / NT-Xent / NCE losses, the momentum (EMA) encoder update, MoCo's FIFO queue of
//! negatives, InstDisc's memory bank, the single-process shuffle-BN emulation and
//! the two-view pipelines.
//!
//! Every function here is written after the upstream code it names, operation for operation, so
//! that `tests/method_contrastive.rs` can compare it with a PyTorch transcription of that code.

use crate::loader::presets::{preset, IMAGENET_MEAN, IMAGENET_STD};
use crate::loader::{Geometry, Pipeline};
use crate::model::heads::HeadInit;
use crate::model::Network;
use crate::train::config::TrainConfig;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// Settings of the contrastive methods (`silt train --method moco|moco-v2|simclr|instdisc`).
/// Defaults are the upstream ones; the temperature default depends on the method and is filled
/// in by the command line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContrastiveConfig {
    /// Output width of the projection head: MoCo `--moco-dim`, InstDisc `--low-dim`, SimCLR
    /// `--proj_out_dim` (all 128).
    pub dim: i64,
    /// MLP head (MoCo v2's `--mlp`: feature_dim → feature_dim, ReLU, → dim; InstDisc as PIC
    /// re-implements it) instead of one linear layer. SimCLR always uses its BN MLP.
    pub mlp: bool,
    /// Softmax temperature: MoCo v1 0.07, v2 0.2; SimCLR 0.1 (CIFAR 0.5); InstDisc 0.07.
    pub temperature: f64,
    /// MoCo: number of negative keys in the queue (`--moco-k`).
    pub queue: usize,
    /// MoCo: momentum of the key encoder's EMA (`--moco-m`).
    pub key_momentum: f64,
    /// MoCo: the batch is cut into this many parts, each with its own BatchNorm statistics, and
    /// the keys are shuffled across them (single-process shuffle BN, as MoCo's colab SplitBatchNorm
    /// emulates 8 GPUs); 1 = plain BN, no shuffle.
    pub bn_splits: usize,
    /// MoCo v2's aug+: colour jitter with p 0.8 and hue 0.1, blur (for crops > 64 px).
    pub aug_plus: bool,
    /// InstDisc: noise samples per example (`--nce-k`); 0 = full softmax over the memory bank.
    pub nce_k: usize,
    /// InstDisc: memory-bank momentum (`--nce-m`).
    pub nce_m: f64,
    /// InstDisc's memory bank and PIC's classifier: how their per-image rows start.
    pub bank_init: BankInit,
    /// SimCLR: LARS (trust ratio on every weight matrix; BN and biases excluded).
    pub lars: bool,
    /// LARS trust coefficient η (SimCLR 0.001).
    pub lars_eta: f64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        ContrastiveConfig {
            dim: 128,
            mlp: false,
            temperature: 0.07,
            queue: 65536,
            key_momentum: 0.999,
            bn_splits: 8,
            aug_plus: false,
            nce_k: 4096,
            nce_m: 0.5,
            bank_init: BankInit::Random,
            lars: false,
            lars_eta: 0.001,
        }
    }
}

/// How the one-row-per-image tables (InstDisc's memory bank, PIC's classifier) start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BankInit {
    /// Upstream: random rows (InstDisc uniform in ±1/√(dim/3), PIC N(0, 0.01²)).
    Random,
    /// Each row is the L2-normalised head output of the untrained network on its image (eval
    /// view), so the first epoch's positives already match their images instead of noise.
    Features,
}

/// Row i = normalise(head(trunk(image i))) in eval mode for the run's records (shared out over
/// the ranks like any feature snapshot); rows of records that failed to decode keep `random`'s.
pub fn feature_rows(ctx: &crate::method::EpochContext, head: &Projection, random: Tensor) -> crate::train::error::Result<Tensor> {
    let trunk = ctx.trunk;
    let fs = crate::train::features::extract_with(ctx.ds, ctx.records, &ctx.extract, &|x| l2_normalize(&head.forward_t(&trunk.forward_t(x, false), false)))?;
    let device = random.device();
    let valid = Tensor::from_slice(&fs.valid).to_device(device).unsqueeze(1);
    Ok(fs.features.to_device(device).where_self(&valid, &random))
}

/// The temperature each method uses upstream.
pub fn default_temperature(method: &str) -> f64 {
    match method {
        "moco-v2" | "pic" => 0.2,
        "simclr" => 0.1,
        _ => 0.07,
    }
}

// ---------------------------------------------------------------------------------------------
// Views

/// A contrastive recipe of `loader::presets` (moco-v1, moco-v2, simclr) at the run's crop size
/// and scale, `count` views per sample. Two changes to the presets: crops of 64 px or less get no
/// blur (SimCLR's CIFAR recipe, MoCo's colab; SimCLR's CIFAR jitter strength 0.5 is *not* taken:
/// on grayscale 28-px data brightness/contrast jitter is the only colour augmentation left, and
/// at half strength the network identifies images by their intensity histogram), and inputs are
/// normalised with ImageNet's mean/std even for SimCLR (which feeds raw [0, 1] pixels upstream),
/// because the trainer's kNN/NMI evaluation extracts features with that normalisation.
pub fn contrastive_pipeline(name: &str, cfg: &TrainConfig, count: usize) -> Pipeline {
    let mut p = preset(name).unwrap_or_else(|| panic!("no loader preset {name}"));
    let small = cfg.crop <= 64;
    for v in &mut p.views {
        v.count = count;
        v.size = cfg.crop;
        if let Geometry::RandomResized { scale, .. } = &mut v.geometry {
            *scale = (cfg.min_scale, 1.0);
        }
        if small {
            v.blur = None;
        }
    }
    p.mean = IMAGENET_MEAN;
    p.std = IMAGENET_STD;
    p
}

// ---------------------------------------------------------------------------------------------
// Projection heads

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// One Linear in → dim (MoCo v1's and InstDisc's fc), PyTorch's default init.
    Linear,
    /// MoCo v2: Linear in → in, ReLU, Linear in → dim (no BN), PyTorch's default init.
    Mlp,
    /// PIC (contrast/resnet.py `mlp_head`): Linear in → hidden (`mid_dim` 2048), ReLU, Linear
    /// hidden → dim (no BN), PyTorch's default init.
    WideMlp { hidden: i64 },
    /// SimCLR v1 (model_util.py `projection_head`, nonlinear): Linear in → in without bias, BN
    /// (γ, β), ReLU, Linear in → dim without bias, BN (γ only: `center=False`); dense layers
    /// N(0, 0.01) as SimCLR initialises them.
    SimclrMlp,
}

/// BatchNorm1d over [N, C], optionally without β (TF's `center=False`); momentum 0.1 (TF decay
/// 0.9), eps 1e-5.
#[derive(Debug)]
struct Bn1d {
    weight: Tensor,
    bias: Option<Tensor>,
    running_mean: Tensor,
    running_var: Tensor,
}

impl Bn1d {
    fn new(p: &nn::Path, c: i64, center: bool) -> Self {
        Bn1d {
            weight: p.var("weight", &[c], nn::Init::Const(1.0)),
            bias: center.then(|| p.var("bias", &[c], nn::Init::Const(0.0))),
            running_mean: p.zeros_no_train("running_mean", &[c]),
            running_var: p.ones_no_train("running_var", &[c]),
        }
    }
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        if let Some(y) = crate::dist::sync_bn::synced(x, Some(&self.weight), self.bias.as_ref(), &self.running_mean, &self.running_var, train) {
            return y;
        }
        x.batch_norm(Some(&self.weight), self.bias.as_ref(), Some(&self.running_mean), Some(&self.running_var), train, 0.1, 1e-5, false)
    }
}

/// A projection head on the trunk's features (ReLU applied first: the trunks give pre-ReLU fc
/// outputs, or non-negative average pools). Parameters `{p}.0.*`, `{p}.2.*` (MLP) or
/// `{p}.0`, `{p}.1`, `{p}.3`, `{p}.4` (SimCLR), as the PyTorch `nn.Sequential` would name them.
#[derive(Debug)]
pub struct Projection {
    kind: HeadKind,
    fc1: nn::Linear,
    bn1: Option<Bn1d>,
    fc2: Option<nn::Linear>,
    bn2: Option<Bn1d>,
}

fn linear(p: nn::Path, i: i64, o: i64, bias: bool, init: HeadInit) -> nn::Linear {
    let (ws_init, bs_init) = init.inits(i);
    nn::linear(p, i, o, nn::LinearConfig { ws_init, bs_init: bias.then_some(bs_init), bias })
}

impl Projection {
    pub fn new(p: &nn::Path, kind: HeadKind, in_dim: i64, out_dim: i64) -> Self {
        match kind {
            HeadKind::Linear => Projection { kind, fc1: linear(p / "0", in_dim, out_dim, true, HeadInit::TorchDefault), bn1: None, fc2: None, bn2: None },
            HeadKind::Mlp => Projection {
                kind,
                fc1: linear(p / "0", in_dim, in_dim, true, HeadInit::TorchDefault),
                bn1: None,
                fc2: Some(linear(p / "2", in_dim, out_dim, true, HeadInit::TorchDefault)),
                bn2: None,
            },
            HeadKind::WideMlp { hidden } => Projection {
                kind,
                fc1: linear(p / "0", in_dim, hidden, true, HeadInit::TorchDefault),
                bn1: None,
                fc2: Some(linear(p / "2", hidden, out_dim, true, HeadInit::TorchDefault)),
                bn2: None,
            },
            HeadKind::SimclrMlp => Projection {
                kind,
                fc1: linear(p / "0", in_dim, in_dim, false, HeadInit::Normal001),
                bn1: Some(Bn1d::new(&(p / "1"), in_dim, true)),
                fc2: Some(linear(p / "3", in_dim, out_dim, false, HeadInit::Normal001)),
                bn2: Some(Bn1d::new(&(p / "4"), out_dim, false)),
            },
        }
    }

    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// Head output (not normalised) of trunk features `features`.
    pub fn forward_t(&self, features: &Tensor, train: bool) -> Tensor {
        let mut x = features.relu().apply(&self.fc1);
        if let Some(bn) = &self.bn1 {
            x = bn.forward_t(&x, train);
        }
        if let Some(fc2) = &self.fc2 {
            x = x.relu().apply(fc2);
        }
        if let Some(bn) = &self.bn2 {
            x = bn.forward_t(&x, train);
        }
        x
    }
}

// ---------------------------------------------------------------------------------------------
// Losses

/// `F.normalize(x, dim=1)`: x / max(‖x‖₂, 1e-12) row by row.
pub fn l2_normalize(x: &Tensor) -> Tensor {
    x / x.norm_scalaropt_dim(2, [1i64], true).clamp_min(1e-12)
}

/// Top-1 accuracy of `logits` [N, C] against `targets` [N].
pub fn top1(logits: &Tensor, targets: &Tensor) -> f64 {
    tch::no_grad(|| logits.argmax(-1, false).eq_tensor(targets).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]))
}

/// MoCo's InfoNCE (moco/builder.py `forward`): with q, k L2-normalised [N, C] and the queue
/// [C, K], logits = [q·k, q·queue] / T (N × (1+K)), target 0, mean cross-entropy. Returns
/// (loss, logits).
pub fn info_nce(q: &Tensor, k: &Tensor, queue: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let l_pos = (q * k).sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
    let l_neg = q.mm(queue);
    let logits = Tensor::cat(&[l_pos, l_neg], 1) / temperature;
    let labels = Tensor::zeros([q.size()[0]], (Kind::Int64, q.device()));
    (logits.cross_entropy_for_logits(&labels), logits)
}

/// SimCLR's NT-Xent (objective.py `add_contrastive_loss`, one core): h = l2norm(z); for view a,
/// logits = [h_a·h_bᵀ, h_a·h_aᵀ − 1e9·I] / T with target i, likewise for view b; loss = mean CE(a)
/// + mean CE(b) (the sum of the two means, as released). Returns (loss, accuracy of view a).
pub fn nt_xent(z1: &Tensor, z2: &Tensor, temperature: f64) -> (Tensor, f64) {
    let (h1, h2) = (l2_normalize(z1), l2_normalize(z2));
    nt_xent_against(&h1, &h2, &h1, &h2, 0, temperature)
}

/// NT-Xent of this rank's normalised projections `h1`, `h2` [n, d] against the whole global
/// batch `a1`, `a2` [N, d] (every rank's, gathered with gradient, as SimCLR's
/// tpu_cross_replica_concat), in which this rank's rows start at `offset`.
pub fn nt_xent_against(h1: &Tensor, h2: &Tensor, a1: &Tensor, a2: &Tensor, offset: i64, temperature: f64) -> (Tensor, f64) {
    const LARGE_NUM: f64 = 1e9;
    let (n, big) = (h1.size()[0], a1.size()[0]);
    let opts = (Kind::Float, h1.device());
    let labels = Tensor::arange(n, (Kind::Int64, h1.device())) + offset;
    // row i masks its own column offset + i
    let masks = Tensor::zeros([n, big], opts).scatter_value(1, &labels.unsqueeze(1), 1.0);
    let logits_aa = h1.mm(&a1.tr()) / temperature - &masks * LARGE_NUM;
    let logits_bb = h2.mm(&a2.tr()) / temperature - &masks * LARGE_NUM;
    let logits_ab = h1.mm(&a2.tr()) / temperature;
    let logits_ba = h2.mm(&a1.tr()) / temperature;
    let logits_a = Tensor::cat(&[logits_ab, logits_aa], 1);
    let logits_b = Tensor::cat(&[logits_ba, logits_bb], 1);
    let loss = logits_a.cross_entropy_for_logits(&labels) + logits_b.cross_entropy_for_logits(&labels);
    (loss, top1(&logits_a, &labels))
}

/// In a data-parallel run: every rank's rows of `t` (no gradient), in rank order, on `t`'s
/// device; otherwise `t` itself.
pub fn gather_from_ranks(t: &Tensor) -> crate::train::error::Result<Tensor> {
    match crate::dist::world() {
        Some(g) => Ok(Tensor::cat(&g.all_gather_varying(&t.detach().to_device(Device::Cpu))?, 0).to_device(t.device())),
        None => Ok(t.shallow_clone()),
    }
}

/// MoCo's shuffling BN across ranks (builder.py `_batch_shuffle_ddp` / `_batch_unshuffle_ddp`):
/// the key images of all ranks are gathered and permuted with rank 0's permutation, each rank
/// encodes its slice of the permuted batch (so BatchNorm never sees a query's own key batch),
/// and the keys are gathered back and un-permuted. Returns (this rank's keys, every rank's keys
/// in rank order, for the queue).
pub fn keys_shuffled_across_ranks(g: &crate::dist::ProcessGroup, x: &Tensor, encode: &dyn Fn(&Tensor) -> Tensor) -> crate::train::error::Result<(Tensor, Tensor)> {
    let device = x.device();
    let parts = g.all_gather_varying(&x.to_device(Device::Cpu))?;
    let lens: Vec<i64> = parts.iter().map(|p| p.size()[0]).collect();
    let all = Tensor::cat(&parts, 0);
    let mut perm = Tensor::randperm(all.size()[0], (Kind::Int64, Device::Cpu));
    g.broadcast(&mut perm, 0)?;
    let offset: i64 = lens[..g.rank()].iter().sum();
    let mine = perm.narrow(0, offset, lens[g.rank()]);
    let k_mine = encode(&all.index_select(0, &mine).to_device(device));
    // row j of k_perm is the key of image perm[j]
    let k_perm = Tensor::cat(&g.all_gather_varying(&k_mine.to_device(Device::Cpu))?, 0);
    let k_all = k_perm.zeros_like().index_copy(0, &perm, &k_perm).to_device(device);
    Ok((k_all.narrow(0, offset, lens[g.rank()]), k_all))
}

/// InstDisc's NCEAverage forward (lib/NCEAverage.py): out = exp(w·f / T) for the K+1 bank rows
/// `weights` [N, K+1, D] of each feature `f` [N, D], divided by the normaliser Z. Z is
/// mean(out)·n_data at the first call (then kept: pass it back in). Returns (P, Z).
pub fn nce_probs(f: &Tensor, weights: &Tensor, temperature: f64, z: Option<f64>, n_data: i64) -> (Tensor, f64) {
    let out = (weights.bmm(&f.unsqueeze(2)).squeeze_dim(2) / temperature).exp();
    let z = z.unwrap_or_else(|| tch::no_grad(|| out.mean(Kind::Float).double_value(&[])) * n_data as f64);
    (out / z, z)
}

/// InstDisc's NCECriterion (lib/NCECriterion.py) with noise distribution P_n = 1/n_data: −[log
/// P₀/(P₀ + K·P_n + ε) + Σ_{j≥1} log K·P_n/(P_j + K·P_n + ε)] summed, divided by the batch size;
/// ε = 1e-7.
pub fn nce_loss(probs: &Tensor, n_data: i64) -> Tensor {
    const EPS: f64 = 1e-7;
    let (b, k1) = (probs.size()[0], probs.size()[1]);
    let kpn = (k1 - 1) as f64 / n_data as f64;
    let p_mt = probs.select(1, 0);
    let ln_pmt = (&p_mt / (&p_mt + (kpn + EPS))).log();
    let p_on = probs.narrow(1, 1, k1 - 1);
    let ln_pon = (kpn / (p_on + (kpn + EPS))).log();
    -(ln_pmt.sum(Kind::Float) + ln_pon.sum(Kind::Float)) / b as f64
}

/// InstDisc's full softmax (lib/LinearAverage.py + CrossEntropyLoss): logits = f·Vᵀ / T over the
/// whole bank, target = the sample's own index. Returns (loss, logits).
pub fn bank_softmax(f: &Tensor, bank: &Tensor, targets: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let logits = f.mm(&bank.tr()) / temperature;
    (logits.cross_entropy_for_logits(targets), logits)
}

// ---------------------------------------------------------------------------------------------
// Momentum encoder, queue, memory bank

/// MoCo's `_momentum_update_key_encoder`: θ_k ← θ_k·m + θ_q·(1 − m) for every (key, query)
/// pair, without gradient.
pub fn ema_update(pairs: &[(Tensor, Tensor)], m: f64) {
    tch::no_grad(|| {
        for (k, q) in pairs {
            let mut k = k.shallow_clone();
            let v = &k * m + q * (1.0 - m);
            k.copy_(&v);
        }
    });
}

/// MoCo's queue of negative keys: `keys` [dim, K], columns L2-normalised at the start
/// (`normalize(randn(dim, K), dim=0)`), and the position of the next write.
#[derive(Debug)]
pub struct Queue {
    pub keys: Tensor,
    pub ptr: i64,
}

impl Queue {
    /// A fresh queue drawn from libtorch's global generator.
    pub fn new(dim: i64, k: i64, device: Device) -> Self {
        let r = Tensor::randn([dim, k], (Kind::Float, device));
        let keys = &r / r.norm_scalaropt_dim(2, [0i64], true).clamp_min(1e-12);
        Queue { keys, ptr: 0 }
    }

    pub fn len(&self) -> i64 {
        self.keys.size()[1]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `_dequeue_and_enqueue`: keys [B, dim] overwrite columns ptr..ptr+B, ptr ← (ptr + B) mod K.
    /// Upstream requires K % B == 0; here a batch that runs past the end wraps around (the last
    /// batch of an epoch may be smaller), and of a batch larger than the queue the last K stay.
    pub fn enqueue(&mut self, keys: &Tensor) {
        let (b, k) = (keys.size()[0], self.len());
        let keep = b.min(k);
        let src = keys.narrow(0, b - keep, keep).tr();
        let idx = (Tensor::arange(keep, (Kind::Int64, keys.device())) + (self.ptr + b - keep)).remainder(k);
        tch::no_grad(|| {
            let _ = self.keys.index_copy_(1, &idx, &src.to_kind(self.keys.kind()));
        });
        self.ptr = (self.ptr + b) % k;
    }
}

/// InstDisc's memory bank: one L2-normalised feature per record (rows start uniform in ±s,
/// s = 1/√(dim/3), not normalised, as lib/NCEAverage.py initialises them).
#[derive(Debug)]
pub struct MemoryBank {
    pub bank: Tensor,
    pub momentum: f64,
}

impl MemoryBank {
    /// A fresh bank drawn from libtorch's global generator.
    pub fn new(n: i64, dim: i64, momentum: f64, device: Device) -> Self {
        let stdv = 1.0 / (dim as f64 / 3.0).sqrt();
        let bank = Tensor::rand([n, dim], (Kind::Float, device)) * (2.0 * stdv) - stdv;
        MemoryBank { bank, momentum }
    }

    pub fn len(&self) -> i64 {
        self.bank.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `idx` [B, K+1] of the bank as [B, K+1, dim] (no gradient flows into the bank).
    pub fn gather(&self, idx: &Tensor) -> Tensor {
        let s = idx.size();
        self.bank.index_select(0, &idx.reshape([-1])).view([s[0], s[1], -1]).detach()
    }

    /// V_i ← normalise(m·V_i + (1 − m)·f_i) for the batch's records (NCEAverage backward).
    pub fn update(&mut self, idx: &Tensor, f: &Tensor) {
        tch::no_grad(|| {
            let w = self.bank.index_select(0, idx) * self.momentum + f * (1.0 - self.momentum);
            let norm = w.pow_tensor_scalar(2).sum_dim_intlist([1i64].as_slice(), true, Kind::Float).pow_tensor_scalar(0.5);
            let _ = self.bank.index_copy_(0, idx, &(w / norm));
        });
    }
}

/// InstDisc's noise draw: [B, K+1] indices uniform over `n` records (libtorch's generator),
/// column 0 replaced by the sample's own index `y`.
pub fn sample_noise(y: &Tensor, k: i64, n: i64) -> Tensor {
    let idx = Tensor::randint(n, [y.size()[0], k + 1], (Kind::Int64, y.device()));
    tch::no_grad(|| {
        idx.select(1, 0).copy_(y);
    });
    idx
}

// ---------------------------------------------------------------------------------------------
// Shuffle BN

/// The trunk run on `x` in `splits` consecutive parts, each with its own BatchNorm statistics (as
/// `splits` GPUs would each see one part). At least two samples per part; 1 = one plain forward.
pub fn forward_split(net: &dyn Network, x: &Tensor, splits: usize, train: bool) -> Tensor {
    let n = x.size()[0];
    let splits = (splits as i64).min(n / 2).max(1);
    if splits == 1 {
        return net.forward_t(x, train);
    }
    let parts: Vec<Tensor> = x.chunk(splits, 0).iter().map(|p| net.forward_t(p, train)).collect();
    Tensor::cat(&parts, 0)
}
