//! `silt shards ...` end to end through the real binary.

use silt_shards::{ContentType, DatasetWriter, DatasetWriterOptions, Record};
use std::path::Path;
use std::process::{Command, Output};

fn silt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silt")).args(args).output().expect("run silt")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// 25 records in shards of 10: labels 0..4, keys `c<label>/img<i>.raw`.
fn make_dataset(dir: &Path) {
    let opts = DatasetWriterOptions { max_records_per_shard: Some(10), ..Default::default() };
    let (w, _) = DatasetWriter::open(dir, opts).unwrap();
    w.update_manifest(|m| m.classes = Some((0..5).map(|c| format!("c{c}")).collect())).unwrap();
    let mut sw = w.shard_writer();
    for i in 0..25u64 {
        let key = format!("c{}/img{i}.raw", i % 5);
        let bytes = vec![i as u8; 4 + i as usize];
        let rec = Record { id: 100 + i, key: &key, label: Some((i % 5) as i64), width: 2, height: 2 + i as u32, content_type: ContentType::RawU8, bytes: &bytes };
        sw.append(&rec).unwrap();
    }
    sw.finish().unwrap();
}

#[test]
fn verify_passes_then_catches_a_flipped_byte_naming_shard_and_record() {
    let dir = tempfile::tempdir().unwrap();
    make_dataset(dir.path());
    let d = dir.path().to_str().unwrap();
    let ok = silt(&["shards", "verify", d]);
    assert!(ok.status.success(), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("OK (3 shards, 25 records"), "{}", stdout(&ok));

    // Record 3 of shard-000001 holds id 113 with 17 payload bytes of value 13.
    let shard = dir.path().join("shard-000001.silt");
    let mut b = std::fs::read(&shard).unwrap();
    let at = b.windows(17).position(|w| w.iter().all(|&x| x == 13)).unwrap();
    b[at + 5] ^= 0x01;
    std::fs::write(&shard, b).unwrap();

    let bad = silt(&["shards", "verify", d]);
    assert_eq!(bad.status.code(), Some(1));
    let text = stdout(&bad);
    assert!(text.contains("shard-000001.silt: record 3: CRC32C mismatch"), "{text}");
    assert!(text.contains("CORRUPT"), "{text}");

    let json = silt(&["shards", "verify", d, "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(stdout(&json).trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["record"], 3);
}

#[test]
fn ls_stats_cat_partition_inspect() {
    let dir = tempfile::tempdir().unwrap();
    make_dataset(dir.path());
    let d = dir.path().to_str().unwrap();

    let ls = silt(&["shards", "ls", d, "--json"]);
    assert!(ls.status.success());
    let rows: Vec<serde_json::Value> = stdout(&ls).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 25);
    assert_eq!(rows[12]["id"], 112);
    assert_eq!(rows[12]["key"], "c2/img12.raw");
    assert_eq!(rows[12]["shard"], "shard-000001.silt");
    assert_eq!(rows[12]["bytes"], 16);
    let plain = silt(&["shards", "ls", d, "--limit", "2"]);
    assert_eq!(stdout(&plain).lines().count(), 2);

    let stats = silt(&["shards", "stats", d, "--json"]);
    let s: serde_json::Value = serde_json::from_str(stdout(&stats).trim()).unwrap();
    assert_eq!(s["records"], 25);
    assert_eq!(s["shards"], 3);
    assert_eq!(s["classes"], 5);
    assert_eq!(s["labels"]["4"], 5);
    assert_eq!(s["height"]["max"], 26);

    let cat = silt(&["shards", "cat", d, "--key", "c3/img8.raw"]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, vec![8u8; 12]);
    let out = dir.path().join("one.bin");
    assert!(silt(&["shards", "cat", d, "--id", "124", "-o", out.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), vec![24u8; 28]);
    let missing = silt(&["shards", "cat", d, "--id", "7"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no record with id 7"));

    let part = silt(&["shards", "partition", d, "--world", "2", "--json"]);
    let parts: Vec<serde_json::Value> = stdout(&part).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["records"].as_u64().unwrap() + parts[1]["records"].as_u64().unwrap(), 25);

    let inspect = silt(&["shards", "inspect", dir.path().join("shard-000002.silt").to_str().unwrap()]);
    assert!(stdout(&inspect).contains("5 records"), "{}", stdout(&inspect));
}

#[test]
fn repair_cleans_up_after_a_crashed_writer() {
    let dir = tempfile::tempdir().unwrap();
    make_dataset(dir.path());
    let d = dir.path().to_str().unwrap();
    // A crash between publishing a shard and listing it, and one mid-write.
    let m = silt_shards::Manifest::load(dir.path()).unwrap();
    let mut trimmed = m.clone();
    trimmed.shards.pop();
    trimmed.records -= 5;
    trimmed.bytes -= m.shards[2].bytes;
    trimmed.payload_bytes -= m.shards[2].payload_bytes;
    trimmed.save(dir.path()).unwrap();
    std::fs::write(dir.path().join(".shard-000003.silt.tmp"), b"partial").unwrap();
    let before = silt(&["shards", "verify", d]);
    assert_eq!(before.status.code(), Some(1), "an unlisted shard is reported");

    let repair = silt(&["shards", "repair", d]);
    assert!(repair.status.success());
    assert!(stdout(&repair).contains("shard-000002.silt"), "{}", stdout(&repair));
    assert!(!dir.path().join(".shard-000003.silt.tmp").exists());
    assert_eq!(silt_shards::Manifest::load(dir.path()).unwrap(), m);
    assert!(silt(&["shards", "verify", d]).status.success());
}

#[test]
fn merge_combines_parts_and_refuses_a_second_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, out) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("merged"));
    make_dataset(&a);
    // Part b: same layout, ids shifted so they do not collide with part a's.
    let (w, _) = DatasetWriter::open(&b, DatasetWriterOptions::default()).unwrap();
    w.update_manifest(|m| m.classes = Some((0..5).map(|c| format!("c{c}")).collect())).unwrap();
    let mut sw = w.shard_writer();
    for i in 0..7u64 {
        let rec = Record { id: 1000 + i, key: "b", label: Some(0), width: 1, height: 1, content_type: ContentType::RawU8, bytes: &[1] };
        sw.append(&rec).unwrap();
    }
    sw.finish().unwrap();
    let (a, b, out) = (a.to_str().unwrap(), b.to_str().unwrap(), out.to_str().unwrap());
    let merged = silt(&["shards", "merge", "--out", out, a, b]);
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    assert!(stdout(&merged).contains("merged 2 parts: 4 shards, 32 records"), "{}", stdout(&merged));
    assert!(silt(&["shards", "verify", out]).status.success());
    let again = silt(&["shards", "merge", "--out", out, a, b]);
    assert_eq!(again.status.code(), Some(2));
}
