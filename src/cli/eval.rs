//! `silt eval knn|linear`: score a checkpoint's features (or a random network's) on labelled
//! shards — weighted kNN (InstDisc: k 200, T 0.07) or a linear probe on frozen features
//! (any conv layer, average-pooled below 10,000 dimensions as the seeds do).

use crate::eval::knn::{knn_eval, KnnConfig};
use super::network::{layer_fn, LoadedNetwork, NetworkArgs};
use crate::eval::linear::{linear_probe, LinearProbeConfig};
use crate::train::evaluate::labelled;
use crate::train::features::{extract_with, ExtractOptions};
use crate::train::run::device;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use silt_shards::Dataset;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tch::Tensor;

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: EvalCommand,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Weighted kNN classifier on L2-normalised features.
    Knn(KnnArgs),
    /// Linear classifier on frozen features (SGD, Bottou decay).
    Linear(LinearArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    #[command(flatten)]
    pub net: NetworkArgs,
    /// Labelled training shards (the kNN memory / the probe's training set).
    #[arg(long)]
    pub train: PathBuf,
    /// Labelled test shards.
    #[arg(long)]
    pub test: PathBuf,
    #[arg(long)]
    pub train_limit: Option<u64>,
    #[arg(long)]
    pub test_limit: Option<u64>,
    /// Features: `features` (the trunk's output) or `conv1`, `conv2`, ... (post-ReLU conv layer
    /// or ResNet stage, average-pooled below 10,000 dimensions).
    #[arg(long, default_value = "features")]
    pub layer: String,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
    pub workers: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KnnArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 200)]
    pub k: usize,
    #[arg(long, default_value_t = 0.07)]
    pub temperature: f64,
}

#[derive(Debug, Args)]
pub struct LinearArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    #[arg(long, alias = "wd", default_value_t = 1e-5)]
    pub weight_decay: f64,
}

impl EvalArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            EvalCommand::Knn(a) => a.run(out),
            EvalCommand::Linear(a) => a.run(out),
        }
    }
}

/// Train and test features of the chosen layer, labelled rows only.
struct Features {
    train: (Tensor, Vec<i64>),
    test: (Tensor, Vec<i64>),
    classes: usize,
    source: String,
}

impl Common {
    fn features(&self) -> anyhow::Result<Features> {
        let LoadedNetwork { _vs, trunk, crop, source } = self.net.load()?;
        let layer = layer_fn(trunk.as_ref(), &self.layer, crop)?;
        let opts = ExtractOptions { crop, batch_size: self.batch_size, workers: self.workers, device: device(), group: None };
        let run = |p: &PathBuf, limit: Option<u64>| -> anyhow::Result<(Tensor, Vec<i64>)> {
            let ds = Arc::new(Dataset::open(p).with_context(|| format!("opening {}", p.display()))?);
            let n = limit.map_or(ds.len(), |l| l.min(ds.len()));
            let fs = extract_with(&ds, n, &opts, &|x| layer(trunk.as_ref(), x))?;
            Ok(labelled(&fs))
        };
        let train = run(&self.train, self.train_limit)?;
        let test = run(&self.test, self.test_limit)?;
        if train.1.is_empty() || test.1.is_empty() {
            bail!("both --train and --test need records with labels");
        }
        let classes = train.1.iter().chain(&test.1).max().map_or(0, |&m| m as usize + 1);
        Ok(Features { train, test, classes, source })
    }
}

impl KnnArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let f = self.common.features()?;
        let cfg = KnnConfig { k: self.k, temperature: self.temperature, ..KnnConfig::default() };
        let r = knn_eval(&f.train.0, &f.train.1, &f.test.0, &f.test.1, f.classes, &cfg)?;
        if self.common.json {
            writeln!(out, "{}", json!({ "model": f.source, "layer": self.common.layer, "k": self.k, "temperature": self.temperature,
                "top1": r.top1, "top5": r.top5, "train": f.train.1.len(), "test": f.test.1.len() }))?;
        } else {
            writeln!(out, "kNN (k {}, T {}) of {} [{}]: top-1 {:.4}, top-5 {:.4} ({} train, {} test images)", self.k, self.temperature, f.source, self.common.layer, r.top1, r.top5, f.train.1.len(), f.test.1.len())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl LinearArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let f = self.common.features()?;
        let cfg = LinearProbeConfig { epochs: self.epochs, lr: self.lr, weight_decay: self.weight_decay, seed: self.common.net.seed, ..LinearProbeConfig::default() };
        let r = linear_probe(&f.train.0, &f.train.1, &f.test.0, &f.test.1, f.classes, &cfg)?;
        if self.common.json {
            writeln!(out, "{}", json!({ "model": f.source, "layer": self.common.layer, "epochs": self.epochs, "top1": r.top1, "top5": r.top5,
                "train_top1": r.train_top1, "dim": f.train.0.size()[1], "train": f.train.1.len(), "test": f.test.1.len() }))?;
        } else {
            writeln!(out, "linear probe of {} [{}, {}-d]: test top-1 {:.4}, top-5 {:.4} (train {:.4}; {} epochs)", f.source, self.common.layer, f.train.0.size()[1], r.top1, r.top5, r.train_top1, self.epochs)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
