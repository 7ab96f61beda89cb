//! The model module's error type. Every variant about a file names it; every variant about a
//! tensor names the tensor, so a bad checkpoint says what is wrong with it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read or written, or is not a valid safetensors file.
    #[error("{path}: {source}")]
    File { path: PathBuf, #[source] source: tch::TchError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    /// Tensors the network has and the file lacks (all of them, sorted).
    #[error("{path}: missing {} tensor(s) the network needs: {}", names.len(), names.join(", "))]
    Missing { path: PathBuf, names: Vec<String> },
    #[error("{path}: tensor {name}: shape {found:?} in the file, the network has {expected:?}")]
    Shape { path: PathBuf, name: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: tensor {name}: dtype {found:?} in the file, the network has {expected:?}")]
    Dtype { path: PathBuf, name: String, expected: tch::Kind, found: tch::Kind },
    #[error("unknown architecture {0:?} (expected one of alexnet, vgg16, resnet18, resnet50, small)")]
    UnknownArch(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
