//! Typed errors. Every variant names the file; record-level variants name the record number too.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a silt shard (bad magic bytes)", path = path.display())]
    BadMagic { path: PathBuf },
    #[error(
        "{path}: shard format version {major}.{minor} is not supported (this build reads {supported}.x)",
        path = path.display(),
        supported = crate::format::VERSION_MAJOR
    )]
    UnsupportedVersion { path: PathBuf, major: u16, minor: u16 },
    /// The file header, footer or index is damaged, or the file is incomplete.
    #[error("{path}: corrupt shard: {what}", path = path.display())]
    Corrupt { path: PathBuf, what: String },
    /// One record is damaged; the others may still be readable.
    #[error("{path}: record {record}: {what}", path = path.display())]
    CorruptRecord { path: PathBuf, record: u64, what: String },
    #[error("{path}: record {record} is out of range (the shard holds {count})", path = path.display())]
    OutOfRange { path: PathBuf, record: u64, count: u64 },
    /// A record handed to a writer that the format cannot hold.
    #[error("{path}: cannot write record {key:?}: {what}", path = path.display())]
    InvalidRecord { path: PathBuf, key: String, what: String },
    #[error("{path}: manifest: {what}", path = path.display())]
    Manifest { path: PathBuf, what: String },
}

impl Error {
    /// The shard or manifest file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. }
            | Error::BadMagic { path }
            | Error::UnsupportedVersion { path, .. }
            | Error::Corrupt { path, .. }
            | Error::CorruptRecord { path, .. }
            | Error::OutOfRange { path, .. }
            | Error::InvalidRecord { path, .. }
            | Error::Manifest { path, .. } => path,
        }
    }

    /// The record number inside the shard, for record-level errors.
    pub fn record(&self) -> Option<u64> {
        match self {
            Error::CorruptRecord { record, .. } | Error::OutOfRange { record, .. } => Some(*record),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
