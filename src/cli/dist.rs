//! `silt dist check | bench`: run under a launcher (torchrun, srun, mpirun, or RANK/WORLD_SIZE/
//! MASTER_ADDR/MASTER_PORT by hand) to check that the ranks find each other and that every
//! collective returns the right values, or to measure all-reduce bandwidth.

use crate::dist::{self, selftest};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DistArgs {
    #[command(subcommand)]
    pub command: DistCommand,
}

#[derive(Debug, Subcommand)]
pub enum DistCommand {
    /// Join the job's process group and check every collective against known values (one JSON
    /// line per rank; exit 1 if any check fails).
    Check,
    /// Time all-reduce (sum) of a float32 buffer; rank 0 prints one JSON line.
    Bench {
        /// Buffer size in megabytes.
        #[arg(long, default_value_t = 100.0)]
        megabytes: f64,
        #[arg(long, default_value_t = 10)]
        iterations: usize,
    },
}

impl DistArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let (launch, group) = dist::init_from_env().context("joining the process group")?;
        let group = match group {
            Some(g) => g,
            None => anyhow::bail!("not a distributed launch: set RANK and WORLD_SIZE (torchrun), or run under srun or mpirun"),
        };
        match &self.command {
            DistCommand::Check => {
                let checks = selftest::run_checks(&group)?;
                let ok = checks.iter().all(|c| c.ok);
                let line = json!({ "rank": launch.rank, "world": launch.world, "local_rank": launch.local_rank,
                    "launcher": format!("{:?}", launch.launcher), "ok": ok, "checks": checks });
                writeln!(out, "{line}")?;
                Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
            DistCommand::Bench { megabytes, iterations } => {
                let b = selftest::bandwidth(&group, *megabytes, *iterations)?;
                if launch.rank == 0 {
                    writeln!(out, "{}", serde_json::to_string(&b)?)?;
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
