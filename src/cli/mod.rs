//! Command-line interface: one file per verb, each with a `run(&self, out)` that writes its
//! report to `out` and returns the process exit code.

mod bench;
mod cluster;
mod dist;
mod doctor;
mod eval;
mod export;
mod ingest;
mod loader;
mod network;
mod progress;
mod report;
mod shards;
mod train;
mod visualize;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "silt", version, about = "Self-supervised visual representations from uncurated image collections",
          long_about = None, propagate_version = true)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, verify, list and partition silt shard datasets.
    Shards(shards::ShardsArgs),
    /// Check the environment: libtorch (CPU/CUDA), faiss, and the shard format version.
    Doctor(doctor::DoctorArgs),
    /// Distributed jobs: `dist check` verifies every collective across the launched ranks,
    /// `dist bench` times all-reduce.
    Dist(dist::DistArgs),
    /// PCA-whiten and k-means (flat or hierarchical) a feature file; `cluster metrics` scores labels.
    /// Under a launcher the k-means work is shared over the ranks.
    Cluster(cluster::ClusterArgs),
    /// Ingest a folder, an ImageNet-zip, a YFCC100M list, tar shards or MNIST-style IDX files into
    /// shards; re-run to resume.
    Ingest(ingest::IngestArgs),
    /// Benchmark the data loader and draw grids of augmented views.
    Loader(loader::LoaderArgs),
    /// Train a network without labels: DeepCluster, RotNet, DeeperCluster, MoCo v1/v2, SimCLR,
    /// InstDisc, SeLa, PIC. Resumes a run directory that holds a checkpoint. Under torchrun, srun
    /// or mpirun every process becomes a data-parallel rank.
    Train(train::TrainArgs),
    /// Score a checkpoint's features on labelled shards: kNN or a linear probe.
    Eval(eval::EvalArgs),
    /// Write a checkpoint's trunk as torchvision-compatible safetensors.
    Export(export::ExportArgs),
    /// Micro-benchmarks: `bench step` times a training step of a network.
    Bench(bench::BenchArgs),
    /// Draw a run's metrics.jsonl as PNG plots (loss, lr, NMI, kNN, cluster sizes) in RUN_DIR/report/.
    Report(report::ReportArgs),
    /// What a network's filters respond to: top-activating images per filter or per cluster, and
    /// filter images by gradient ascent on the input (PNG grids).
    Visualize(visualize::VisualizeArgs),
}

impl Command {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match self {
            Command::Shards(a) => a.run(out),
            Command::Doctor(a) => a.run(out),
            Command::Dist(a) => a.run(out),
            Command::Cluster(a) => a.run(out),
            Command::Ingest(a) => a.run(out),
            Command::Loader(a) => a.run(out),
            Command::Train(a) => a.run(out),
            Command::Eval(a) => a.run(out),
            Command::Export(a) => a.run(out),
            Command::Bench(a) => a.run(out),
            Command::Report(a) => a.run(out),
            Command::Visualize(a) => a.run(out),
        }
    }
}

/// Log lines go to stderr through tracing; RUST_LOG wins over -v.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
