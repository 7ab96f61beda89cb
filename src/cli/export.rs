//! `silt export`: a checkpoint's trunk as torchvision-compatible safetensors
//! (`torchvision.models.resnet18().load_state_dict(...)` loads it, the head aside).

use crate::model::export::save_torchvision;
use crate::train::run::trunk_from_checkpoint;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A checkpoint (.safetensors) or a run directory (its latest checkpoint).
    pub checkpoint: PathBuf,
    /// Output file (.safetensors).
    #[arg(long, short)]
    pub out: PathBuf,
}

impl ExportArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let (vs, trunk, cfg) = trunk_from_checkpoint(&self.checkpoint).with_context(|| format!("loading {}", self.checkpoint.display()))?;
        save_torchvision(&vs, &self.out).with_context(|| format!("writing {}", self.out.display()))?;
        writeln!(out, "wrote {} ({} {}, {}-d features, torchvision parameter names)", self.out.display(), cfg.method, trunk.arch().name(), trunk.feature_dim())?;
        Ok(ExitCode::SUCCESS)
    }
}
