//! Files written by format 1.0 (committed in tests/compat_data/v1/) must keep opening, with the
//! same content, in every later build. Regenerate only for a new format version:
//! `SILT_WRITE_COMPAT=1 cargo test -p silt-shards --test compat` writes a fresh copy.

use silt_shards::{verify_dataset, ContentType, Dataset, DatasetWriter, DatasetWriterOptions, OwnedRecord};
use std::path::PathBuf;

fn expected_records() -> Vec<OwnedRecord> {
    (0..12u64)
        .map(|i| OwnedRecord {
            id: 1000 + i,
            key: format!("class{}/image-{i:02}.jpg", i % 3),
            label: if i == 11 { None } else { Some((i % 3) as i64) },
            width: 32 + i as u32,
            height: 24,
            content_type: if i % 4 == 0 { ContentType::Png } else { ContentType::Jpeg },
            bytes: (0..(i * 13 + 1)).map(|b| (b * 7 + i) as u8).collect(),
        })
        .collect()
}

fn compat_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat_data/v1")
}

#[test]
fn format_1_0_files_keep_opening() {
    let dir = compat_dir();
    if std::env::var_os("SILT_WRITE_COMPAT").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        let opts = DatasetWriterOptions { max_records_per_shard: Some(5), ..Default::default() };
        let (w, _) = DatasetWriter::open(&dir, opts).unwrap();
        w.update_manifest(|m| m.classes = Some(vec!["class0".into(), "class1".into(), "class2".into()])).unwrap();
        let mut sw = w.shard_writer();
        for r in expected_records() {
            sw.append(&r.as_record()).unwrap();
        }
        sw.finish().unwrap();
    }
    let report = verify_dataset(&dir);
    assert!(report.ok(), "{:?}", report.problems);
    let ds = Dataset::open(&dir).unwrap();
    assert_eq!(ds.manifest().shard_format, "1.0");
    assert_eq!(ds.manifest().shards.len(), 3);
    let got: Vec<OwnedRecord> = (0..ds.len()).map(|g| ds.get(g).unwrap().to_owned_record()).collect();
    assert_eq!(got, expected_records());
}
