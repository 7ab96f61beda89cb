//! `Item`: one entry of a source listing, before it is fetched and checked.

use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use futures::future::BoxFuture;

/// One thing a source lists. `index` is the item's position in the source's deterministic
/// listing order (counting every item, also rejected ones); it becomes the record id, so the
/// same input always gets the same id, whatever part, machine or resumed run ingests it.
pub struct Item {
    pub index: u64,
    /// Source key: relative path, zip entry name or object key.
    pub key: String,
    pub label: Option<i64>,
    pub payload: Payload,
}

pub enum Payload {
    /// The bytes came with the listing (tar members).
    Ready(Bytes),
    /// The bytes must be fetched (files, zip entries, objects); the fetch stage calls it,
    /// concurrently with other items and again on transient failures.
    Fetch(Box<dyn Fetch>),
    /// The listing already knows the item is unusable (unsafe path, video, ...).
    Rejected(Rejection),
}

/// A handle that reads one item's bytes. Called again after a transient error.
pub trait Fetch: Send + Sync {
    /// Reads the bytes; items larger than `max_bytes` fail with `TooLarge` without being read
    /// whole, so a hostile input cannot exhaust memory.
    fn fetch(&self, max_bytes: u64) -> BoxFuture<'_, Result<Bytes, FetchError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{bytes} bytes exceed --max-bytes {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    /// Worth retrying (network, server busy, timeouts).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (permission, corrupt container entry).
    #[error("{0}")]
    Permanent(String),
}

impl FetchError {
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Transient(_))
    }

    pub fn into_rejection(self) -> Rejection {
        let reason = match &self {
            FetchError::NotFound(_) => Reason::NotFound,
            FetchError::TooLarge { .. } => Reason::TooLarge,
            FetchError::Transient(_) => Reason::FetchFailed,
            FetchError::Permanent(_) => Reason::ReadError,
        };
        Rejection::new(reason, self.to_string())
    }

    /// Classifies a local I/O error: missing files are `NotFound`, interrupted or timed-out
    /// reads are retried, the rest is permanent.
    pub fn from_io(what: &str, e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound => FetchError::NotFound(what.to_string()),
            Interrupted | TimedOut | WouldBlock => FetchError::Transient(format!("{what}: {e}")),
            _ => FetchError::Permanent(format!("{what}: {e}")),
        }
    }
}
