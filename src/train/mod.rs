//! The trainer: optimiser, schedules, checkpoints, metrics log, feature snapshots, evaluation and
//! the epoch loop ([`run::train`]). Methods plug in through `crate::method::Method`.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod metrics;
pub mod optim;
pub mod precision;
pub mod run;
pub mod schedule;

pub use config::{ClusteringConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use run::{train, TrainSummary};
