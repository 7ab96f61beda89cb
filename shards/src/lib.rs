//! silt-shards: silt's record-file format.
//!
//! A dataset is a directory of immutable shard files plus `manifest.json`. Each shard holds image
//! records (id, key, label, size, content type, payload) with a CRC32C each, an index of record
//! offsets and a checksummed footer; readers map the file and hand out zero-copy `Record`s.
//! The byte layout is specified in FORMAT.md.
//!
//! ```no_run
//! use silt_shards::{ContentType, Dataset, DatasetWriter, DatasetWriterOptions, Record};
//! # fn main() -> silt_shards::Result<()> {
//! let (writer, _recovery) = DatasetWriter::open("out", DatasetWriterOptions::default())?;
//! let mut shard = writer.shard_writer();
//! shard.append(&Record { id: 0, key: "cat.jpg", label: Some(3), width: 640, height: 480,
//!                        content_type: ContentType::Jpeg, bytes: b"..." })?;
//! shard.finish()?;
//! let ds = Dataset::open("out")?;
//! assert_eq!(ds.get(0)?.key, "cat.jpg");
//! # Ok(()) }
//! ```

pub mod dataset;
pub mod dataset_writer;
pub mod error;
pub mod format;
pub mod manifest;
pub mod merge;
pub mod partition;
pub mod reader;
pub mod record;
pub mod verify;
pub mod writer;

pub use dataset::Dataset;
pub use dataset_writer::{DatasetWriter, DatasetWriterOptions, Recovery, ShardWriter};
pub use error::{Error, Result};
pub use format::ContentType;
pub use manifest::{Manifest, ShardEntry};
pub use merge::{merge_datasets, MergeReport};
pub use partition::{partition, PartitionMode};
pub use reader::ShardReader;
pub use record::{OwnedRecord, Record};
pub use verify::{check_shard, verify_dataset, verify_dataset_with_progress, Problem, VerifyReport};
pub use writer::ShardFileWriter;
