//! silt: self-supervised visual representation learning from uncurated image collections.
//!
//! This crate holds everything after a shard exists (see DESIGN in the README): the CLI today;
//! the loader, models, methods, clustering, distributed training and evaluation as they land.
//! The shard format lives in `silt-shards`.

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
