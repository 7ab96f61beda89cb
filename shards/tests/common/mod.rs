//! Helpers shared by the silt-shards integration tests.
#![allow(dead_code)]

use proptest::prelude::*;
use silt_shards::{ContentType, OwnedRecord, ShardFileWriter};
use std::path::{Path, PathBuf};

pub fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
    (
        any::<u64>(),
        "[a-zA-Z0-9/_.é-]{0,40}",
        prop_oneof![Just(None), (i64::MIN + 1..=i64::MAX).prop_map(Some)],
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(id, key, label, width, height, ct, bytes)| OwnedRecord {
            id,
            key,
            label,
            width,
            height,
            content_type: ContentType::from_code(ct),
            bytes,
        })
}

/// Writes `records` into `dir/name` and returns the path.
pub fn write_shard(dir: &Path, name: &str, records: &[OwnedRecord]) -> PathBuf {
    let path = dir.join(name);
    let mut w = ShardFileWriter::create(&path).expect("create shard");
    for r in records {
        w.append(&r.as_record()).expect("append");
    }
    w.finish().expect("finish");
    path
}

/// Where `ops/get-data` put the real data (SILT_DATA, default ~/.cache/silt/data).
pub fn real_data_dir() -> PathBuf {
    let dir = std::env::var_os("SILT_DATA").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/silt/data")
    });
    assert!(
        dir.join("photos/photos.tsv").exists(),
        "real data not found in {} (run ops/get-data, or set SILT_DATA)",
        dir.display()
    );
    dir
}
