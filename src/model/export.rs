//! Weights in and out as safetensors with torchvision's (DeepCluster's for AlexNet-BN) names.
//!
//! The VarStore already holds the PyTorch names (`conv1.weight`, `layer1.0.bn1.running_var`,
//! `features.0.weight`, ...), so the only differences from a torchvision `state_dict` are:
//! - PyTorch's BatchNorm has an int64 scalar buffer `num_batches_tracked` that tch's lacks:
//!   [`save_torchvision`] writes it (value 0: with the default momentum 0.1 PyTorch never reads
//!   it) next to every `*.running_mean`; [`load_torchvision`] skips it.
//! - torchvision's heads (`fc.*`, `classifier.6.*`; DeepCluster's `top_layer.*`) are not part of a
//!   trunk: [`load_torchvision`] ignores them and lists them in its [`LoadReport`]. To load a
//!   silt export into torchvision with `strict=True`, replace the head by `nn.Identity()` (or
//!   delete `classifier[6]`) first.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use tch::{nn, Device, Kind, Tensor};

use super::ModelError;

const NBT: &str = "num_batches_tracked";

/// What [`load_torchvision`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tensors copied into the VarStore (= every variable of the VarStore), sorted.
    pub loaded: Vec<String>,
    /// Tensors of the file the VarStore lacks (e.g. `fc.weight`, `classifier.6.bias`), sorted;
    /// `num_batches_tracked` buffers are not listed here.
    pub ignored: Vec<String>,
    /// How many BatchNorm `num_batches_tracked` buffers were skipped.
    pub num_batches_tracked: usize,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "loaded {} tensors", self.loaded.len())?;
        if !self.ignored.is_empty() {
            write!(f, "; ignored {} not in the network: {}", self.ignored.len(), self.ignored.join(", "))?;
        }
        if self.num_batches_tracked > 0 {
            write!(f, "; skipped {} num_batches_tracked", self.num_batches_tracked)?;
        }
        Ok(())
    }
}

/// The tensors [`save_torchvision`] writes: every variable of `vs` (on the CPU, contiguous) plus
/// a zero int64 scalar `P.num_batches_tracked` for every `P.running_mean`, sorted by name.
pub fn torchvision_state(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let vars = vs.variables();
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    for (name, t) in &vars {
        let t = tch::no_grad(|| t.detach().to_device(Device::Cpu).contiguous());
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let nbt = format!("{prefix}.{NBT}");
            if !vars.contains_key(&nbt) {
                out.insert(nbt, Tensor::zeros(Vec::<i64>::new(), (Kind::Int64, Device::Cpu)));
            }
        }
        out.insert(name.clone(), t);
    }
    out.into_iter().collect()
}

/// Writes every variable of `vs` to `path` (safetensors) under its VarStore name, adding the
/// BatchNorm `num_batches_tracked` buffers torchvision's `load_state_dict(strict=True)` expects.
/// Build the network at `vs.root()` for the names to be torchvision's. The file is written
/// next to `path` and renamed into place, so a crash never leaves a truncated checkpoint.
pub fn save_torchvision(vs: &nn::VarStore, path: &Path) -> Result<(), ModelError> {
    let state = torchvision_state(vs);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    Tensor::write_safetensors(&state, &tmp).map_err(|source| ModelError::File { path: path.into(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.into(), source })
}

fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

/// Loads a torchvision-format safetensors file (as written by `safetensors.torch.save_file(
/// model.state_dict())` or [`save_torchvision`]) into `vs`.
///
/// Every variable of `vs` must be in the file with the same shape (floating-point tensors may
/// differ in precision: they are converted); otherwise nothing is modified and the error names
/// the tensors. Tensors of the file that `vs` lacks (heads such as `fc.*`) are ignored and
/// listed in the report, `*.num_batches_tracked` buffers are skipped and counted.
pub fn load_torchvision(vs: &mut nn::VarStore, path: &Path) -> Result<LoadReport, ModelError> {
    let file: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|source| ModelError::File { path: path.into(), source })?
        .into_iter()
        .collect();
    let vars = vs.variables();

    // Validate everything before touching the VarStore.
    let mut missing: Vec<String> = vars.keys().filter(|n| !file.contains_key(*n)).cloned().collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(ModelError::Missing { path: path.into(), names: missing });
    }
    let mut loaded: Vec<String> = vars.keys().cloned().collect();
    loaded.sort();
    for name in &loaded {
        let (var, src) = (&vars[name], &file[name]);
        if var.size() != src.size() {
            return Err(ModelError::Shape { path: path.into(), name: name.clone(), expected: var.size(), found: src.size() });
        }
        let ok = if is_float(var.kind()) { is_float(src.kind()) } else { var.kind() == src.kind() };
        if !ok {
            return Err(ModelError::Dtype { path: path.into(), name: name.clone(), expected: var.kind(), found: src.kind() });
        }
    }

    let mut report = LoadReport { loaded, ..Default::default() };
    for name in file.keys() {
        if vars.contains_key(name) {
            continue;
        }
        if name.ends_with(&format!(".{NBT}")) || name == NBT {
            report.num_batches_tracked += 1;
        } else {
            report.ignored.push(name.clone());
        }
    }
    report.ignored.sort();

    tch::no_grad(|| -> Result<(), ModelError> {
        for name in &report.loaded {
            let mut var = vars[name].shallow_clone();
            var.f_copy_(&file[name])?;
        }
        Ok(())
    })?;
    Ok(report)
}
