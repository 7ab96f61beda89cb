//! Checkpoints: `checkpoints/step-NNNNNNNNN.safetensors` (trunk weights and buffers under
//! `trunk.`, optimiser momentum under `optim.`, the method's heads and state under `method.`)
//! plus a `.json` with where the run stands. Both are written to temporary names, synced and
//! renamed, and only then does `checkpoints/LATEST` name them — so a SIGKILL at any moment leaves
//! either the previous checkpoint or the new one, never a torn one.

use super::error::{io_err, Result, TrainError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    pub format: u32,
    pub method: String,
    /// The epoch in progress (or the next one, when `position` is 0).
    pub epoch: u64,
    /// Samples of `epoch` each rank has consumed.
    pub position: u64,
    /// Data-parallel ranks when the checkpoint was taken (a resume with another count re-deals
    /// the epoch's unread samples).
    #[serde(default = "one")]
    pub world: usize,
    /// Optimiser steps taken so far.
    pub step: u64,
    pub seed: u64,
    /// Length of metrics.jsonl when the checkpoint was taken.
    pub metrics_offset: u64,
    /// The method's own small state (cluster counts, head shapes...).
    pub method_state: serde_json::Value,
    /// The run's configuration (model, data, hyper-parameters), so `silt eval` and `--resume`
    /// can rebuild everything from the checkpoint alone.
    pub config: serde_json::Value,
}

fn one() -> usize {
    1
}

#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub meta: CheckpointMeta,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// The tensors whose names start with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.tensors.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.shallow_clone()))).collect()
    }
}

fn dir_of(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io_err(dir))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Writes a checkpoint and makes it the latest; keeps the newest `keep` (at least 1).
pub fn save(run_dir: &Path, meta: &CheckpointMeta, tensors: &[(String, Tensor)], keep: usize) -> Result<PathBuf> {
    let dir = dir_of(run_dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let stem = format!("step-{:09}", meta.step);
    let weights = dir.join(format!("{stem}.safetensors"));
    let tmp = dir.join(format!(".{stem}.safetensors.tmp"));
    let cpu: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    Tensor::write_safetensors(&cpu, &tmp)?;
    fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &weights).map_err(io_err(&weights))?;
    let json = dir.join(format!("{stem}.json"));
    let tmp = dir.join(format!(".{stem}.json.tmp"));
    let text = serde_json::to_vec_pretty(meta).map_err(|e| TrainError::Checkpoint { path: json.clone(), message: e.to_string() })?;
    write_synced(&tmp, &text)?;
    fs::rename(&tmp, &json).map_err(io_err(&json))?;
    sync_dir(&dir)?;
    let latest = dir.join("LATEST");
    let tmp = dir.join(".LATEST.tmp");
    write_synced(&tmp, format!("{stem}\n").as_bytes())?;
    fs::rename(&tmp, &latest).map_err(io_err(&latest))?;
    sync_dir(&dir)?;
    prune(&dir, &stem, keep.max(1))?;
    Ok(weights)
}

/// Deletes all but the newest `keep` checkpoints (never the one just written).
fn prune(dir: &Path, current: &str, keep: usize) -> Result<()> {
    let mut stems: Vec<String> = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_string))
        .filter(|s| s.starts_with("step-"))
        .collect();
    stems.sort();
    let excess = stems.len().saturating_sub(keep);
    for stem in stems.into_iter().take(excess).filter(|s| s != current) {
        for ext in ["safetensors", "json"] {
            let _ = fs::remove_file(dir.join(format!("{stem}.{ext}")));
        }
    }
    Ok(())
}

/// The latest complete checkpoint of a run directory, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let latest = dir_of(run_dir).join("LATEST");
    match fs::read_to_string(&latest) {
        Ok(s) => Ok(Some(dir_of(run_dir).join(format!("{}.safetensors", s.trim())))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TrainError::Io { path: latest, source: e }),
    }
}

/// Loads a checkpoint from its `.safetensors` path (the `.json` beside it), or from a run
/// directory (its latest checkpoint).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let weights = if path.is_dir() {
        latest(path)?.ok_or_else(|| TrainError::Checkpoint { path: path.to_path_buf(), message: "no checkpoint in this run directory".into() })?
    } else {
        path.to_path_buf()
    };
    let json = weights.with_extension("json");
    let text = fs::read(&json).map_err(io_err(&json))?;
    let meta: CheckpointMeta = serde_json::from_slice(&text).map_err(|e| TrainError::Checkpoint { path: json.clone(), message: format!("not a silt checkpoint description: {e}") })?;
    if meta.format > FORMAT_VERSION {
        return Err(TrainError::Checkpoint { path: json, message: format!("checkpoint format {} is newer than this silt ({FORMAT_VERSION})", meta.format) });
    }
    let tensors = Tensor::read_safetensors(&weights).map_err(|e| TrainError::Checkpoint { path: weights.clone(), message: e.to_string() })?;
    Ok(Checkpoint { path: weights, meta, tensors: tensors.into_iter().collect() })
}

/// The VarStore's variables (parameters and buffers) as (prefix + name, tensor), sorted.
pub fn named_vars(vs: &tch::nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Copies saved tensors `prefix + name` into every variable of `vs`; a missing tensor or a shape
/// mismatch is an error naming it.
pub fn restore_vars(vs: &tch::nn::VarStore, saved: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
    for (name, mut var) in vs.variables() {
        let key = format!("{prefix}{name}");
        let t = saved.get(&key).ok_or_else(|| TrainError::Config(format!("checkpoint lacks tensor {key:?}")))?;
        if t.size() != var.size() {
            return Err(TrainError::Config(format!("checkpoint tensor {key:?} has shape {:?}, the model expects {:?}", t.size(), var.size())));
        }
        tch::no_grad(|| var.copy_(t));
    }
    Ok(())
}
