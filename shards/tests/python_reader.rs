//! The Python reader (ops/silt_shards.py), written from FORMAT.md alone, reads what the Rust
//! writer wrote, record for record, and finds the same corruption: two implementations of the spec
//! agreeing is the check that the spec says what the code does.

mod common;
use common::record_strategy;
use proptest::prelude::*;
use silt_shards::{DatasetWriter, DatasetWriterOptions, OwnedRecord};
use std::path::Path;
use std::process::Command;

const DUMP: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import silt_shards
try:
    for r in silt_shards.Dataset(sys.argv[2]):
        print(json.dumps([r.id, r.key, r.label, r.width, r.height, r.content_type, bytes(r.payload).hex()]))
except silt_shards.ShardError as e:
    print("ShardError:", e)
"#;

fn python_dump(dir: &Path) -> Vec<String> {
    let python = std::env::var("SILT_PYTHON").unwrap_or_else(|_| "python3".into());
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops");
    let out = Command::new(python).arg("-c").arg(DUMP).arg(ops).arg(dir).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

fn write_dataset(dir: &Path, records: &[OwnedRecord]) {
    let opts = DatasetWriterOptions { max_records_per_shard: Some(4), ..Default::default() };
    let (w, _) = DatasetWriter::open(dir, opts).unwrap();
    let mut sw = w.shard_writer();
    for r in records {
        sw.append(&r.as_record()).unwrap();
    }
    sw.finish().unwrap();
}

proptest! {
    // Each case starts a Python process; 24 cases keep this test to a few seconds.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn python_reads_what_rust_wrote(records in prop::collection::vec(record_strategy(), 0..10)) {
        let dir = tempfile::tempdir().unwrap();
        write_dataset(dir.path(), &records);
        let lines = python_dump(dir.path());
        prop_assert_eq!(lines.len(), records.len());
        for (line, r) in lines.iter().zip(&records) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let hex: String = r.bytes.iter().map(|b| format!("{b:02x}")).collect();
            let want = serde_json::json!([r.id, r.key, r.label, r.width, r.height, r.content_type.name(), hex]);
            // Unknown content-type codes print as other(N) in Python and "other" in Rust.
            if let silt_shards::ContentType::Other(code) = r.content_type {
                let mut want = want;
                want[5] = serde_json::json!(format!("other({code})"));
                prop_assert_eq!(v, want);
            } else {
                prop_assert_eq!(v, want);
            }
        }
    }
}

#[test]
fn python_reports_the_same_corrupt_record() {
    let records: Vec<OwnedRecord> = (0..6u64)
        .map(|i| OwnedRecord {
            id: i,
            key: format!("k{i}"),
            label: Some(1),
            width: 2,
            height: 2,
            content_type: silt_shards::ContentType::RawU8,
            bytes: vec![i as u8; 100],
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), &records);
    // Record 5 is the second record of the second shard; flip one payload byte.
    let shard = dir.path().join("shard-000001.silt");
    let reader = silt_shards::ShardReader::open(&shard).unwrap();
    let at = reader.record(1).unwrap().bytes.as_ptr() as usize - reader.as_bytes().as_ptr() as usize + 50;
    drop(reader);
    let mut b = std::fs::read(&shard).unwrap();
    b[at] ^= 0x10;
    std::fs::write(&shard, b).unwrap();

    let report = silt_shards::verify_dataset(dir.path());
    // The record's CRC and the shard's whole-file CRC in the manifest both catch it.
    let named: Vec<_> = report.problems.iter().map(|p| (p.shard.as_str(), p.record)).collect();
    assert_eq!(named, [("shard-000001.silt", Some(1)), ("shard-000001.silt", None)], "{:?}", report.problems);
    let lines = python_dump(dir.path());
    let last = lines.last().unwrap();
    assert!(last.starts_with("ShardError:") && last.contains("shard-000001.silt: record 1: CRC32C mismatch"), "{last}");
    assert_eq!(lines.len(), 6, "five good records, then the error");
}
