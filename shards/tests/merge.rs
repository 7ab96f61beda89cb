//! Merging part datasets into one.

use silt_shards::{merge_datasets, verify_dataset, ContentType, Dataset, DatasetWriter, DatasetWriterOptions, Error, Record};
use std::path::Path;

fn part(dir: &Path, ids: impl Iterator<Item = u64>, classes: &[&str]) {
    let (w, _) = DatasetWriter::open(dir, DatasetWriterOptions { max_records_per_shard: Some(3), ..Default::default() }).unwrap();
    w.update_manifest(|m| m.classes = Some(classes.iter().map(|c| c.to_string()).collect())).unwrap();
    let mut sw = w.shard_writer();
    for id in ids {
        let key = format!("img{id}");
        let bytes = id.to_le_bytes();
        sw.append(&Record { id, key: &key, label: Some(id as i64 % 2), width: 1, height: 1, content_type: ContentType::RawU8, bytes: &bytes }).unwrap();
    }
    sw.finish().unwrap();
}

#[test]
fn parts_merge_into_one_verified_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("out"));
    part(&a, (0..20).step_by(2), &["x", "y"]);
    part(&b, (1..20).step_by(2), &["x", "y"]);
    let report = merge_datasets(&out, &[a.clone(), b.clone()]).unwrap();
    assert_eq!((report.parts, report.shards, report.records), (2, 8, 20));
    assert!(verify_dataset(&out).ok());
    let ds = Dataset::open(&out).unwrap();
    let mut ids: Vec<u64> = (0..ds.len()).map(|g| ds.get(g).unwrap().id).collect();
    assert_eq!(&ids[..3], &[0, 2, 4], "part a first, in its order");
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    assert_eq!(ds.manifest().classes.as_deref(), Some(&["x".to_string(), "y".to_string()][..]));
    assert_eq!(ds.manifest().params["merged_from"].as_array().unwrap().len(), 2);
    // The parts are untouched and still valid.
    assert!(verify_dataset(&a).ok() && verify_dataset(&b).ok());
    // Merging again into the same output is refused rather than duplicating records.
    let again = merge_datasets(&out, &[a, b]).unwrap_err();
    assert!(again.to_string().contains("already holds shards"), "{again}");
}

#[test]
fn overlapping_ids_or_different_classes_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    part(&a, 0..10, &["x", "y"]);
    part(&b, 9..12, &["x", "y"]);
    part(&c, 100..101, &["y", "x"]);
    let e = merge_datasets(&tmp.path().join("o1"), &[a.clone(), b]).unwrap_err();
    assert!(matches!(e, Error::Manifest { .. }) && e.to_string().contains("record id 9"), "{e}");
    let e = merge_datasets(&tmp.path().join("o2"), &[a, c]).unwrap_err();
    assert!(e.to_string().contains("different class list"), "{e}");
    assert!(!tmp.path().join("o1").exists() && !tmp.path().join("o2").exists(), "nothing written on refusal");
}
