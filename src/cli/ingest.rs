//! `silt ingest ...`: turn a folder, an ImageNet-zip, or a YFCC100M list into a shard dataset.
//! The arguments live in the silt-ingest crate (`silt_ingest::cli`), shared with the
//! stand-alone `silt-ingest` binary, so both have the same flags and `--help`.

pub use silt_ingest::cli::IngestArgs;
