//! silt: self-supervised visual representation learning from uncurated image collections.
//!
//! This crate holds everything after a shard exists (see DESIGN in the README): the CLI, the
//! loader, models, methods, clustering, distributed training, evaluation and reports. The shard
//! format lives in `silt-shards`, ingestion in `silt-ingest`.

// tch's `a *= b` / `a += b` are in-place tensor ops (autograd sees another graph, and a tensor
// saved for backward must not change), not the `a = a * b` clippy would rewrite them to.
#![allow(clippy::assign_op_pattern)]

pub mod cli;
pub mod cluster;
pub mod dist;
pub mod doctor;
pub mod eval;
pub mod loader;
pub mod method;
pub mod model;
pub mod report;
pub mod train;
