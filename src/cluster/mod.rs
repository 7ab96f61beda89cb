//! The clustering engine: what trainers call every few epochs on feature snapshots, and what
//! `silt cluster` runs alone on feature files.
//!
//! Data flow: [`snapshot`] (N×D features per rank, mmap) → [`pca`] (fit on a sample, whiten,
//! L2-normalise) → [`kmeans`] (faiss on CPU, tch on GPU or as CPU fallback) or
//! [`hierarchical`] (two levels) or [`sinkhorn`] (SeLa self-labelling) → [`assign`] (labels and
//! centroids written as `.npy` arrays that numpy can mmap) → [`metrics`] for evaluation.

pub mod assign;
pub mod distributed;
pub mod error;
pub mod hierarchical;
pub mod hungarian;
pub mod kmeans;
pub mod metrics;
pub mod npy;
pub mod pca;
pub mod refine;
pub mod rng;
pub mod sinkhorn;
pub mod snapshot;

pub use error::{ClusterError, Result};
