use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Sampler(#[from] crate::loader::SamplerError),
    #[error(transparent)]
    Shards(#[from] silt_shards::Error),
    #[error(transparent)]
    Dist(#[from] crate::dist::DistError),
    #[error("{0}")]
    Config(String),
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged { step: u64, loss: f64 },
    #[error("{0}")]
    Data(String),
    #[error("--decode gpu")]
    Decode(#[from] crate::loader::gpu::NvJpegError),
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}
