//! Everything a training run is made of; saved into every checkpoint so that `--resume` and
//! `silt eval` can rebuild the run from the checkpoint alone.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainConfig {
    /// Training shards (a silt dataset directory).
    pub data: PathBuf,
    /// Use only the first `limit` records of `data` (all when None).
    pub limit: Option<u64>,
    /// Held-out labelled shards for kNN / NMI evaluation after every epoch (optional).
    pub eval_data: Option<PathBuf>,
    pub eval_limit: Option<u64>,
    /// Run directory: metrics.jsonl, config.json, checkpoints/, report/.
    pub run_dir: PathBuf,
    pub method: String,
    pub arch: String,
    pub sobel: bool,
    /// Start the trunk from these torchvision-format safetensors (ignored when resuming).
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
    /// Side of the training crops (224 for ImageNet-like data, 28 for MNIST).
    pub crop: u32,
    /// Lower bound of RandomResizedCrop's area scale.
    pub min_scale: f64,
    pub epochs: u64,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub schedule: super::schedule::LrSchedule,
    pub seed: u64,
    /// Decode/augment threads.
    pub workers: usize,
    /// Torch intra-op threads (0 = libtorch's default).
    pub threads: usize,
    /// Checkpoint every this many steps (and at every epoch end); 0 = epoch ends only.
    pub checkpoint_every: u64,
    pub keep_checkpoints: usize,
    /// Data-parallel runs: which records each rank reads (instance methods; PIC's default is part).
    #[serde(default)]
    pub cache_mode: crate::loader::CacheMode,
    /// The training step's forward precision (bf16 = autocast, parameters stay float32).
    #[serde(default)]
    pub precision: super::precision::Precision,
    /// Where JPEGs are decoded: cpu = the worker pool; gpu = nvJPEG + batched augmentation on
    /// the training device; auto = gpu when nvJPEG and a CUDA device are there.
    #[serde(default)]
    pub decode: crate::loader::gpu::DecodeMode,
    /// Data-parallel runs: SyncBatchNorm (always on for DeeperCluster).
    #[serde(default)]
    pub sync_bn: bool,
    pub log_every: u64,
    /// Stop after this many steps in total (tests use it to stop mid-epoch); None = run all epochs.
    pub max_steps: Option<u64>,
    /// Method-specific settings.
    pub clustering: ClusteringConfig,
    /// InstDisc / MoCo / SimCLR settings.
    #[serde(default)]
    pub contrastive: crate::method::contrastive::ContrastiveConfig,
    /// SeLa settings.
    #[serde(default)]
    pub sela: crate::method::sela::SelaConfig,
    /// PIC settings (its feature width and temperature are `contrastive.dim` / `.temperature`).
    #[serde(default)]
    pub pic: crate::method::pic::PicConfig,
}

impl TrainConfig {
    /// The optimiser of the trunk and of every head: momentum SGD, with LARS when asked for.
    pub fn sgd(&self) -> super::optim::SgdConfig {
        let sgd = super::optim::SgdConfig::new(self.momentum, self.weight_decay, self.nesterov);
        if self.contrastive.lars {
            sgd.with_lars(self.contrastive.lars_eta)
        } else {
            sgd
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusteringConfig {
    /// Number of clusters (DeepCluster k; DeeperCluster: total sub-classes).
    pub k: usize,
    /// PCA output dimension before k-means (DeepCluster 256; DeeperCluster 4096).
    pub dim_pca: usize,
    /// k-means iterations (DeepCluster 20, DeeperCluster 10).
    pub niter: usize,
    /// DeepCluster: samples per epoch = reassign × records.
    pub reassign: f64,
    /// DeeperCluster: number of super-classes (with rotation: 4 × super-clusters).
    pub super_classes: usize,
    /// DeeperCluster: re-cluster every this many epochs.
    pub reassignment: u64,
    /// DeeperCluster: rotation as part of the super-class target.
    pub rotnet: bool,
    /// k-means implementation (None: faiss on the CPU, tch on a GPU). With tch, data-parallel
    /// runs share each iteration's assignment over the ranks.
    #[serde(default)]
    pub kmeans_backend: Option<crate::cluster::kmeans::Backend>,
}
