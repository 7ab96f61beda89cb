//! `silt bench step`: time one training step (forward, cross-entropy, backward, SGD update) of a
//! network on a synthetic batch — the figure benches/train_step_compare.py sets beside PyTorch
//! eager doing the same step.

use crate::model::{self, heads, ModelConfig};
use crate::train::checkpoint::named_vars;
use crate::train::optim::{Sgd, SgdConfig};
use crate::train::precision::Precision;
use crate::train::run::device;
use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time training steps of a network on a random batch.
    Step(StepArgs),
}

#[derive(Debug, Args)]
pub struct StepArgs {
    #[arg(long, default_value = "resnet18")]
    pub arch: String,
    #[arg(long, default_value_t = 32)]
    pub batch: i64,
    /// Input side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: i64,
    /// Classes of the linear head.
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// libtorch threads (0: libtorch's default).
    #[arg(long, default_value_t = 0)]
    pub threads: i32,
    /// Forward and loss under autocast in bfloat16 (as `silt train --precision bf16`).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            BenchCommand::Step(a) => a.run(out),
        }
    }
}

impl StepArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        if self.threads > 0 {
            tch::set_num_threads(self.threads);
        }
        let arch = <model::Arch as clap::ValueEnum>::from_str(&self.arch, true).map_err(|e| anyhow!("--arch {}: {e}", self.arch))?;
        let dev = device();
        tch::manual_seed(0);
        let vs = nn::VarStore::new(dev);
        let trunk = model::build(&vs.root(), &ModelConfig::new(arch));
        let head = heads::linear_head(&(vs.root() / "fc"), trunk.feature_dim(), self.classes, heads::HeadInit::TorchDefault);
        let mut opt = Sgd::new(named_vars(&vs, ""), SgdConfig::new(0.9, 1e-4, false));
        let x = Tensor::randn([self.batch, 3, self.size, self.size], (Kind::Float, dev));
        let y = Tensor::randint(self.classes, [self.batch], (Kind::Int64, dev));
        let mut times = Vec::with_capacity(self.steps);
        for i in 0..self.warmup + self.steps {
            let t0 = Instant::now();
            // PyTorch's default zero_grad(set_to_none=True), so both sides run the same step
            opt.clear_grad();
            let loss = {
                let _amp = self.precision.enter(dev);
                head.forward(&trunk.forward_t(&x, true).relu()).cross_entropy_for_logits(&y)
            };
            loss.backward();
            opt.step(0.01);
            let _ = loss.double_value(&[]); // waits for the device
            if i >= self.warmup {
                times.push(t0.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        if self.json {
            writeln!(out, "{}", json!({ "arch": self.arch, "batch": self.batch, "size": self.size, "steps": self.steps, "threads": tch::get_num_threads(),
                "median_s": median, "mean_s": mean, "precision": format!("{:?}", self.precision).to_lowercase(), "images_per_s": self.batch as f64 / median, "device": format!("{dev:?}") }))?;
        } else {
            writeln!(out, "{} batch {} at {}px on {dev:?} ({} threads): median step {:.1} ms, mean {:.1} ms, {:.0} images/s",
                self.arch, self.batch, self.size, tch::get_num_threads(), median * 1e3, mean * 1e3, self.batch as f64 / median)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}
