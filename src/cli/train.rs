//! `silt train`: one self-supervised run (DeepCluster, RotNet, DeeperCluster, MoCo v1/v2, SimCLR,
//! InstDisc, SeLa, PIC) on a shard dataset. Re-running with the same `--run-dir` resumes from its
//! latest checkpoint.

use crate::method::contrastive::{default_temperature, BankInit, ContrastiveConfig};
use crate::loader::gpu::DecodeMode;
use crate::loader::CacheMode;
use crate::method::pic::{default_small_crop, window_epochs, PicConfig};
use crate::method::sela::SelaConfig;
use crate::method::{defaults, METHODS};
use crate::train::precision::Precision;
use crate::train::schedule::{LrSchedule, Schedule};
use crate::train::{train, ClusteringConfig, TrainConfig};
use anyhow::bail;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum ScheduleArg {
    /// The method's own: RotNet's step table, constant for DeepCluster and DeeperCluster; MoCo v1
    /// and InstDisc ×0.1 at --milestones (default 120,160); cosine for MoCo v2 and SimCLR; SeLa
    /// ×0.1 at --milestones (default 150,300,350: lr·0.1^(epoch//150) below epoch 350, lr·1e-3
    /// from 350); PIC: cosine to 1e-6 after a warm-up from lr/100 over epochs/40 (integer
    /// division).
    Auto,
    Constant,
    Cosine,
    /// ×0.1 at each of --milestones.
    Step,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training shards (a silt dataset directory, see `silt ingest`).
    pub data: PathBuf,
    /// deepcluster, rotnet, deepercluster, moco (v1), moco-v2 (= moco --mlp --aug-plus
    /// --temperature 0.2 --schedule cosine), simclr, instdisc, sela or pic.
    #[arg(long, default_value = "deepcluster", value_parser = clap::builder::PossibleValuesParser::new(METHODS))]
    pub method: String,
    /// Run directory (metrics.jsonl, checkpoints/, pseudo_labels.tsv, report/). An existing one
    /// with a checkpoint is resumed. Seeds call it --exp / --dump_path.
    #[arg(long, alias = "exp", alias = "dump-path", default_value = "runs/silt")]
    pub run_dir: PathBuf,
    /// Network: alexnet (DeepCluster's, with BN), vgg16 (VGG16-BN), resnet18, resnet50, small (28-32 px).
    #[arg(long, default_value = "alexnet")]
    pub arch: String,
    /// Fixed grayscale + Sobel filters in front of the network (DeepCluster, DeeperCluster).
    #[arg(long)]
    pub sobel: bool,
    /// Initialise the trunk from torchvision-format safetensors (e.g. `silt export` output or
    /// torchvision's weights saved with safetensors); heads in the file are ignored.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Side of the training crops in pixels (224 for photos, 28 for MNIST-like data).
    #[arg(long, default_value_t = 224)]
    pub crop: u32,
    /// RandomResizedCrop's smallest area fraction (default: the method's: 0.08, MoCo and InstDisc
    /// 0.2).
    #[arg(long)]
    pub min_scale: Option<f64>,
    /// Use only the first N records (DeeperCluster's --size_dataset).
    #[arg(long, alias = "size-dataset")]
    pub limit: Option<u64>,
    /// Labelled held-out shards: kNN accuracy and NMI after every epoch (and of the random init).
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Use only the first N records of --eval-data.
    #[arg(long)]
    pub eval_limit: Option<u64>,
    #[arg(long, default_value_t = 200)]
    pub epochs: u64,
    /// Images per step on each process (default: the method's: DeepCluster 256, RotNet 192,
    /// DeeperCluster 48, MoCo 256, SimCLR 512, InstDisc 256, SeLa 256, PIC 256). Data-parallel
    /// runs take this many on every rank: the global batch is this × the world size.
    #[arg(long, alias = "batch")]
    pub batch_size: Option<usize>,
    /// Learning rate (default: DeepCluster 0.05, RotNet 0.01, DeeperCluster 0.1, MoCo 0.03,
    /// SimCLR 0.3 × global batch/256, InstDisc 0.03, SeLa 0.08, PIC 0.03 × global batch/256).
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum (default 0.9).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (default: DeepCluster 1e-5, RotNet 5e-4, DeeperCluster 1e-5, MoCo 1e-4,
    /// SimCLR 1e-6, InstDisc 1e-4, SeLa 1e-5, PIC 1e-4 — on its classifier W too).
    #[arg(long, alias = "wd")]
    pub weight_decay: Option<f64>,
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    pub schedule: ScheduleArg,
    /// Epochs of linear warm-up from lr/100 (default 0; PIC: epochs/40, rescaled like the epochs
    /// with --use-sliding-window-sampler).
    #[arg(long, alias = "warmup-epoch")]
    pub warmup_epochs: Option<f64>,
    /// Epochs at which --schedule step multiplies the rate by 0.1.
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<f64>,
    /// Clusters (DeepCluster --nmb_cluster; DeeperCluster: total sub-classes over all super-classes).
    #[arg(long, alias = "nmb-cluster", default_value_t = 10000)]
    pub k: usize,
    /// PCA dimension before k-means (DeepCluster 256; DeeperCluster uses 4096).
    #[arg(long, default_value_t = 256)]
    pub dim_pca: usize,
    /// k-means iterations (DeepCluster 20; DeeperCluster 10).
    #[arg(long, default_value_t = 20)]
    pub niter: usize,
    /// k-means of the clustering methods: faiss (the default on the CPU, as DeepCluster) or torch
    /// (the default on a GPU). With torch, data-parallel runs share every iteration's assignment
    /// over the ranks (each assigns its blocks of rows; labels identical to one process's).
    #[arg(long, value_enum)]
    pub kmeans_backend: Option<crate::cluster::kmeans::Backend>,
    /// DeepCluster: samples per epoch = reassign × records.
    #[arg(long, default_value_t = 1.0)]
    pub reassign: f64,
    /// DeeperCluster: super-classes (4 × super-clusters with --rotnet).
    #[arg(long, default_value_t = 16)]
    pub super_classes: usize,
    /// DeeperCluster: re-cluster every N epochs.
    #[arg(long, default_value_t = 3)]
    pub reassignment: u64,
    /// DeeperCluster: rotation in the super-class target (true by default; --rotnet false to turn off).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rotnet: bool,
    /// The contrastive methods' flags (boxed: they would make `Command::Train` much larger than
    /// the other subcommands).
    #[command(flatten)]
    pub contrastive: Box<ContrastiveArgs>,
    /// SeLa's flags (boxed for the same reason).
    #[command(flatten)]
    pub sela: Box<SelaArgs>,
    /// PIC's flags (boxed for the same reason).
    #[command(flatten)]
    pub pic: Box<PicArgs>,
    #[arg(long, default_value_t = 31)]
    pub seed: u64,
    /// Decode/augment threads.
    #[arg(long, default_value_t = default_workers())]
    pub workers: usize,
    /// Forward pass and loss under autocast in bfloat16 (parameters, gradients, optimiser state
    /// and checkpoints stay float32; no loss scaling needed). fp32 = plain float32.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Where JPEGs are decoded: cpu = libjpeg-turbo in the worker pool; gpu = nvJPEG, then the
    /// augmentations as batched tensor ops on the training device (an error without nvJPEG
    /// and CUDA); auto = gpu when both are there, else cpu.
    #[arg(long, value_enum, default_value_t = DecodeMode::Cpu)]
    pub decode: DecodeMode,
    /// libtorch threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Data-parallel runs of the methods that visit every record once per epoch (RotNet, MoCo,
    /// SimCLR, InstDisc, SeLa, PIC): part = each rank reads only its own contiguous shards
    /// (shuffled within them; memory-mapped, so only those pages are ever loaded, as PIC's
    /// upstream shards its in-memory cache); full / no = a global shuffle dealt over the ranks.
    /// Default: part for PIC, full otherwise. Clustering methods sample by pseudo-label and ignore
    /// it; so does PIC's sliding window.
    #[arg(long, value_enum)]
    pub cache_mode: Option<CacheMode>,
    /// Data-parallel runs: BatchNorm statistics over the batches of all ranks (SyncBatchNorm)
    /// instead of each rank's own. DeeperCluster always synchronises them.
    #[arg(long)]
    pub sync_bn: bool,
    /// Checkpoint every N steps as well as at every epoch end (0: epoch ends only).
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: u64,
    /// Checkpoints kept in the run directory.
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Write a "step" metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Stop (with a checkpoint) after N steps in total.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// MoCo v1/v2, SimCLR and InstDisc settings, with the upstream defaults.
#[derive(Debug, Args)]
pub struct ContrastiveArgs {
    /// MoCo / SimCLR / InstDisc: output width of the projection head (MoCo --moco-dim, InstDisc
    /// --low-dim, SimCLR --proj_out_dim; all 128).
    /// PIC: width of W's rows and of the head's output (PIC --feature-dim).
    #[arg(long, visible_alias = "low-dim", visible_alias = "feature-dim", default_value_t = 128)]
    pub moco_dim: i64,
    /// MoCo: negative keys in the queue (upstream 65536; its CIFAR colab 4096).
    #[arg(long, default_value_t = 65536)]
    pub moco_k: usize,
    /// MoCo: momentum of the key encoder (upstream 0.999; colab 0.99).
    #[arg(long, default_value_t = 0.999)]
    pub moco_m: f64,
    /// Softmax temperature (default: MoCo v1 0.07, MoCo v2 0.2, SimCLR 0.1 (its CIFAR runs 0.5),
    /// InstDisc 0.07 (its CIFAR runs 0.1), PIC 0.2 (scripts/PIC.sh)).
    #[arg(long, visible_alias = "moco-t", visible_alias = "nce-t", visible_alias = "contrast-temperature")]
    pub temperature: Option<f64>,
    /// MoCo / InstDisc: MLP projection head (feature_dim → feature_dim, ReLU, → dim) instead of a
    /// linear one (MoCo v2's --mlp; on by default for moco-v2).
    #[arg(long)]
    pub mlp: bool,
    /// MoCo: v2's augmentation (jitter .4/.4/.4/.1 with p .8, grayscale, blur; on by default for
    /// moco-v2). Crops of 64 px or less never get blur (MoCo's CIFAR colab, SimCLR's CIFAR recipe).
    #[arg(long)]
    pub aug_plus: bool,
    /// MoCo: single-process shuffle BN — each encoder runs the batch in this many parts with their
    /// own BatchNorm statistics and the keys are shuffled across them (MoCo colab: 8); 1 = off.
    #[arg(long, default_value_t = 8)]
    pub bn_splits: usize,
    /// InstDisc: noise samples per image for NCE (upstream 4096); 0 = full softmax over the bank.
    #[arg(long, default_value_t = 4096)]
    pub nce_k: usize,
    /// InstDisc: momentum of the memory-bank update (upstream 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub nce_m: f64,
    /// InstDisc's memory bank / PIC's classifier rows: random (upstream) or the untrained network's
    /// normalised features of each image (one eval pass before the first epoch; short runs).
    #[arg(long, value_enum, default_value_t = BankInit::Random)]
    pub bank_init: BankInit,
    /// SimCLR: LARS on trunk and head (momentum = --momentum; biases and BN excluded from weight
    /// decay and adaptation), as SimCLR trains by default.
    #[arg(long)]
    pub lars: bool,
    /// LARS trust coefficient (SimCLR 0.001).
    #[arg(long, default_value_t = 0.001)]
    pub lars_eta: f64,
}

/// SeLa settings, with the defaults of upstream's main.py flags.
#[derive(Debug, Args)]
pub struct SelaArgs {
    /// SeLa: number of heads, each with its own labels (upstream default 1; its ImageNet scripts 10).
    #[arg(long, default_value_t = 1)]
    pub hc: usize,
    /// SeLa: clusters per head (upstream 3000; its CIFAR code 128).
    #[arg(long, default_value_t = 3000)]
    pub ncl: usize,
    /// SeLa: label optimisations over the run, at samples (epochs + 0.01)·N·(j/(nopts−1))², the
    /// first before the first step (upstream 100, at (E + 1.01)·N·(j/(nopts−1))² where its
    /// --epochs E trains E + 1 epochs; its CIFAR code 400, spaced linearly).
    #[arg(long, default_value_t = 100)]
    pub nopts: usize,
    /// SeLa: λ, the power of the probabilities in the Sinkhorn-Knopp label optimisation
    /// (upstream 25; its CIFAR code 10).
    #[arg(long, default_value_t = 25.0)]
    pub lamb: f64,
    /// SeLa: Sinkhorn stops when Σ|c/c_new − 1| ≤ this, checked every 10 iterations (upstream
    /// 0.1; its CIFAR code 0.01).
    #[arg(long, default_value_t = 0.1)]
    pub sk_tol: f64,
    /// SeLa: augmentation level: 0 Resize+CenterCrop, 1 + flip, 2 RandomResizedCrop + flip,
    /// 3 RandomResizedCrop + grayscale (p 0.2) + ColorJitter(.4,.4,.4,.4) + flip (upstream 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub augs: u8,
}

/// PIC's augmentation (upstream `--aug`).
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum PicAug {
    /// One crop per image: RandomResizedCrop(--crop, --min-scale..1), flip, colour jitter
    /// (.8,.8,.8,.2) with p .8, grayscale .2, blur .5 (no blur for crops of 64 px or less).
    Simclr,
    /// scripts/PIC.sh: one crop of --crop px (scale --crop2..1) plus --num-crop2 crops of
    /// --image-size2 px (scale --min-scale..--crop2), same colour ops; the small crops train the
    /// encoder only (their logits use W.detach()).
    #[value(alias = "multi-crop")]
    Multicrop,
}

/// PIC (parametric instance classification) settings, named after bl0/PIC's flags. Upstream's
/// `--crop` (smallest crop area) is --min-scale here (PIC default 0.08) and `--image-size` is
/// --crop; zipped ImageNet (`--zip`) is read by converting it once with `silt ingest zip`.
#[derive(Debug, Args)]
pub struct PicArgs {
    /// PIC: simclr (one crop) or multicrop (1 large + --num-crop2 small crops).
    #[arg(long, value_enum, ignore_case = true, default_value_t = PicAug::Simclr)]
    pub aug: PicAug,
    /// PIC multicrop: side of the small crops (default 96 next to large crops of 160 px or more,
    /// else 0.6 × --crop, upstream's 96/160).
    #[arg(long)]
    pub image_size2: Option<u32>,
    /// PIC multicrop: smallest area of the large crop and largest of the small ones.
    #[arg(long, default_value_t = 0.14)]
    pub crop2: f64,
    /// PIC multicrop: number of small crops.
    #[arg(long, default_value_t = 3)]
    pub num_crop2: usize,
    /// PIC: sliding-window data scheduler — an epoch is a window of --window-size samples that
    /// moves by --window-stride over an endless chain of permutations, so each image is seen in
    /// window/stride consecutive epochs; --epochs (and the warm-up) are rescaled to
    /// ceil(epochs × N / window).
    #[arg(long)]
    pub use_sliding_window_sampler: bool,
    /// PIC: sliding window size D (capped at the number of records).
    #[arg(long, default_value_t = 131072)]
    pub window_size: u64,
    /// PIC: sliding window stride S.
    #[arg(long, default_value_t = 16384)]
    pub window_stride: u64,
    /// PIC: softmax over the batch's own classes plus the K most recently visited instances (the
    /// paper's negative sampling, not in the released code), with the skipped momentum and
    /// weight-decay updates of W's rows applied in closed form when they are touched again;
    /// 0 = full softmax over all N instances (the released code).
    #[arg(long, default_value_t = 0)]
    pub negatives: usize,
    /// PIC: hidden width of the MLP head (in → hidden → --feature-dim; upstream --mlp-head,
    /// 2048); 0 = one linear layer.
    #[arg(long, default_value_t = 2048)]
    pub mlp_hidden: i64,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let Some(d) = defaults(&self.method) else { bail!("unknown method {}", self.method) };
        let batch_size = self.batch_size.unwrap_or(d.batch_size);
        // the linear scaling rule reads the global batch (every rank's)
        let world = crate::dist::Launch::from_env()?.world;
        let global_batch = batch_size * world;
        // SimCLR and PIC scale their base rate linearly with the batch.
        let lr = self.lr.unwrap_or(match self.method.as_str() {
            "simclr" => 0.3 * global_batch as f64 / 256.0,
            "pic" => d.lr * global_batch as f64 / 256.0,
            _ => d.lr,
        });
        let v2 = self.method == "moco-v2";
        let pic = self.method == "pic";
        // PIC's warm-up: epochs/40 (scripts/PIC.sh, integer division).
        let mut warmup = self.warmup_epochs.unwrap_or(if pic { (self.epochs / 40) as f64 } else { 0.0 });
        let mut epochs = self.epochs;
        let p = &self.pic;
        if pic && p.use_sliding_window_sampler {
            // main_pretrain.py: with the sliding window an epoch is one window, and the epoch
            // count and the warm-up become ceil(x · N / D).
            let ds = silt_shards::Dataset::open(&self.data)?;
            let records = self.limit.map_or(ds.len(), |l| l.min(ds.len()));
            epochs = window_epochs(self.epochs as f64, records, p.window_size) as u64;
            warmup = window_epochs(warmup, records, p.window_size);
        }
        let schedule = match self.schedule {
            ScheduleArg::Auto if pic => Schedule::Cosine { epochs: epochs as f64, final_lr: 1e-6 },
            ScheduleArg::Auto if self.method == "rotnet" => LrSchedule::rotnet_table(lr).schedule,
            ScheduleArg::Auto if v2 || self.method == "simclr" => Schedule::Cosine { epochs: self.epochs as f64, final_lr: 0.0 },
            ScheduleArg::Auto if self.method == "moco" || self.method == "instdisc" => {
                let milestones = if self.milestones.is_empty() { vec![120.0, 160.0] } else { self.milestones.clone() };
                Schedule::Step { milestones, gamma: 0.1 }
            }
            // SeLa main.py: lr·0.1^(epoch // 150) below epoch 350, lr·0.1³ from 350.
            ScheduleArg::Auto if self.method == "sela" => {
                let milestones = if self.milestones.is_empty() { vec![150.0, 300.0, 350.0] } else { self.milestones.clone() };
                Schedule::Step { milestones, gamma: 0.1 }
            }
            ScheduleArg::Auto | ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Cosine => Schedule::Cosine { epochs: epochs as f64, final_lr: 0.0 },
            ScheduleArg::Step => Schedule::Step { milestones: self.milestones.clone(), gamma: 0.1 },
        };
        Ok(TrainConfig {
            data: self.data.clone(),
            limit: self.limit,
            eval_data: self.eval_data.clone(),
            eval_limit: self.eval_limit,
            run_dir: self.run_dir.clone(),
            method: self.method.clone(),
            arch: self.arch.clone(),
            sobel: self.sobel,
            pretrained: self.pretrained.clone(),
            crop: self.crop,
            min_scale: self.min_scale.unwrap_or(d.min_scale),
            epochs,
            batch_size,
            lr,
            momentum: self.momentum.unwrap_or(d.momentum),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            nesterov: d.nesterov,
            schedule: LrSchedule { base: lr, schedule, warmup_epochs: warmup, warmup_start: 0.01 },
            seed: self.seed,
            workers: self.workers.max(1),
            threads: self.threads,
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: self.keep_checkpoints,
            sync_bn: self.sync_bn,
            decode: self.decode,
            precision: self.precision,
            cache_mode: self.cache_mode.unwrap_or(if self.method == "pic" { CacheMode::Part } else { CacheMode::Full }),
            log_every: self.log_every,
            max_steps: self.max_steps,
            clustering: ClusteringConfig {
                k: self.k,
                dim_pca: self.dim_pca,
                niter: self.niter,
                reassign: self.reassign,
                super_classes: self.super_classes,
                reassignment: self.reassignment,
                rotnet: self.rotnet,
                kmeans_backend: self.kmeans_backend,
            },
            contrastive: {
                let c = &self.contrastive;
                ContrastiveConfig {
                    dim: c.moco_dim,
                    mlp: c.mlp || v2,
                    temperature: c.temperature.unwrap_or_else(|| default_temperature(&self.method)),
                    queue: c.moco_k,
                    key_momentum: c.moco_m,
                    bn_splits: c.bn_splits.max(1),
                    aug_plus: c.aug_plus || v2,
                    nce_k: c.nce_k,
                    nce_m: c.nce_m,
                    bank_init: c.bank_init,
                    lars: c.lars,
                    lars_eta: c.lars_eta,
                }
            },
            sela: {
                let s = &self.sela;
                SelaConfig { hc: s.hc, ncl: s.ncl, nopts: s.nopts, lambda: s.lamb, tol: s.sk_tol, augs: s.augs }
            },
            pic: PicConfig {
                hidden: p.mlp_hidden.max(0),
                multicrop: p.aug == PicAug::Multicrop,
                small_crop: p.image_size2.unwrap_or_else(|| default_small_crop(self.crop)),
                crop2: p.crop2,
                num_small: p.num_crop2,
                sliding_window: p.use_sliding_window_sampler,
                window_size: p.window_size,
                window_stride: p.window_stride,
                negatives: p.negatives,
            },
        })
    }

    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let cfg = self.config()?;
        let s = train(&cfg)?;
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        } else {
            writeln!(out, "{} run in {}", s.method, s.run_dir.display())?;
            writeln!(out, "  epochs done   {}", s.epochs_done)?;
            writeln!(out, "  steps         {}{}", s.steps, s.resumed_from_step.map_or(String::new(), |r| format!(" (resumed at step {r})")))?;
            writeln!(out, "  time          {:.1} s, {:.0} images/s", s.seconds, s.images_per_second)?;
            if let Some(l) = s.last_loss {
                writeln!(out, "  last loss     {l:.4}")?;
            }
            if let Some(e) = &s.eval {
                writeln!(out, "  kNN top-1     {:.4}   NMI (k-means on test features) {:.4}", e.knn_top1, e.nmi)?;
            }
            if let Some(c) = &s.checkpoint {
                writeln!(out, "  checkpoint    {}", c.display())?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
