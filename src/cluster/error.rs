//! One error type for the clustering engine. Every variant that concerns a file names it, so a
//! long job that stops on a bad snapshot says which file and why.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path}: corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: format version {found_major}.{found_minor} is not supported (this build reads {major}.x)")]
    IncompatibleVersion { path: PathBuf, found_major: u16, found_minor: u16, major: u16 },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("faiss: {0}")]
    Faiss(#[from] faiss::error::Error),
}

impl ClusterError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClusterError::Io { path: path.into(), source }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ClusterError::Corrupt { path: path.into(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;
