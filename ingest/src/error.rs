//! Errors that stop an ingest run. Problems with single items are not errors: they become
//! quarantine entries (see `quarantine.rs`).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}", path = path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Shards(#[from] silt_shards::Error),
    #[error("{path}: not a readable zip archive: {source}", path = path.display())]
    Zip { path: PathBuf, source: zip::result::ZipError },
    #[error("{path}:{line}: {what}", path = path.display())]
    BadList { path: PathBuf, line: u64, what: String },
    #[error("object store {url}: {source}")]
    Store { url: String, source: object_store::Error },
    /// An IDX file (MNIST) or its classes file is malformed.
    #[error("{path}: {problem}", path = path.display())]
    Idx { path: PathBuf, problem: crate::source::idx::IdxError },
    #[error("{0}")]
    Usage(String),
    /// The output directory holds a dataset made by a different command; resuming into it would
    /// mix two datasets.
    #[error("{dir} was made by a different ingest command:\n  before: {before}\n  now:    {now}\nuse a new --out directory, or repeat the original command to resume", dir = dir.display())]
    DifferentCommand { dir: PathBuf, before: String, now: String },
    /// Many fetches in a row failed after all retries: the store is down or unreachable.
    /// Stopping beats quarantining the rest of the list; re-running resumes.
    #[error("{failures} fetches in a row failed (last: {last}); the source looks unavailable. Re-run the same command to resume")]
    SourceUnavailable { failures: u64, last: String },
    #[error("a pipeline task failed: {0}")]
    Task(String),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io { path: path.into(), error }
    }
}
