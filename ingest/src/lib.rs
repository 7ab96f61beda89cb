//! silt-ingest: turns image sources into silt shard datasets, concurrently, resumably, and
//! without letting bad input stop the job.
//!
//! ```text
//! Source::items()  (folder | zip | yfcc | tar | idx)  an async stream of `Item`s in listing order
//!   -> fetch       (concurrent, retried, timed out)                       fetch.rs
//!   -> validate    (header, or full decode; pixel limit)                  validate.rs
//!   -> transform   (optional: resize shorter side + JPEG re-encode)       transform.rs
//!   -> dedup       (BLAKE3 of the bytes, first listed copy wins)          dedup.rs
//!                  (--dedup perceptual: pHash within a threshold)         phash.rs
//!   -> ShardWriter (silt-shards, several threads)                         pipeline.rs
//! bad items -> quarantine.jsonl, duplicates -> duplicates.jsonl           quarantine.rs
//! re-running the same command resumes from shards + logs                  resume.rs
//! --upload URL: shards (multipart), logs, then manifest.json to an object store  upload.rs
//! ```
//!
//! The record id of an item is its position in the source's listing order, so ids do not depend
//! on timing, on `--part`, or on how often a run was interrupted.

pub mod cli;
pub mod dedup;
pub mod error;
pub mod fetch;
pub mod item;
pub mod merge;
pub mod npy;
pub mod phash;
pub mod pipeline;
pub mod progress;
pub mod quarantine;
pub mod resume;
pub mod source;
pub mod store;
pub mod summary;
pub mod transform;
pub mod upload;
pub mod validate;

pub use error::{Error, Result};
pub use item::{Fetch, FetchError, Item, Payload};
pub use pipeline::{run, Options, Part};
pub use quarantine::{Reason, Rejection};
pub use source::Source;
pub use summary::Summary;
pub use validate::{CheckLevel, ValidateOptions};
