//! Damaged shards: every kind of corruption gives a typed error that names the shard (and the
//! record, when one record is hit), never a panic or an out-of-bounds read.

mod common;
use common::{record_strategy, write_shard};
use proptest::prelude::*;
use silt_shards::format::{FOOTER_LEN, HEADER_LEN};
use silt_shards::{check_shard, Error, OwnedRecord, ShardReader};
use std::path::Path;

/// Reads everything a consumer could read; returns the errors. Must never panic.
fn read_all(path: &Path) -> Result<Vec<Error>, Error> {
    let r = ShardReader::open(path)?;
    let mut errors = Vec::new();
    for i in 0..r.len() {
        if let Err(e) = r.record(i) {
            errors.push(e);
        }
        if let Err(e) = r.record_checked(i) {
            errors.push(e);
        }
    }
    assert!(r.record(r.len()).is_err(), "reading past the end must fail");
    Ok(errors)
}

/// Byte ranges [start, end) of each record slot, from an intact copy.
fn record_ranges(path: &Path) -> Vec<(u64, u64)> {
    let r = ShardReader::open(path).unwrap();
    let base = r.as_bytes().as_ptr() as u64;
    (0..r.len())
        .map(|i| {
            let rec = r.record(i).unwrap();
            let payload = rec.bytes.as_ptr() as u64 - base;
            let start = payload - silt_shards::format::RECORD_HEADER_LEN;
            let end = silt_shards::format::align_up(payload + rec.bytes.len() as u64 + rec.key.len() as u64);
            (start, end)
        })
        .collect()
}

fn shard_with(records: &[OwnedRecord]) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_shard(dir.path(), "victim.silt", records);
    let bytes = std::fs::read(&path).unwrap();
    (dir, path, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// One flipped bit anywhere is always found by `check_shard`, and when it lies inside a record
    /// the problem names exactly that record.
    #[test]
    fn any_bit_flip_is_detected(records in prop::collection::vec(record_strategy(), 1..6), pick in any::<u64>(), bit in 0u8..8) {
        let (_dir, path, mut bytes) = shard_with(&records);
        let ranges = record_ranges(&path);
        let at = (pick % bytes.len() as u64) as usize;
        bytes[at] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();

        let (_, problems) = check_shard(&path);
        prop_assert!(!problems.is_empty(), "flip at byte {} went unnoticed", at);
        prop_assert!(problems.iter().all(|p| p.shard == "victim.silt"));
        let hit = ranges.iter().position(|&(s, e)| (s..e).contains(&(at as u64)));
        if let Some(i) = hit {
            prop_assert_eq!(problems.len(), 1);
            prop_assert_eq!(problems[0].record, Some(i as u64));
        } else {
            prop_assert!(problems.iter().all(|p| p.record.is_none()));
        }
        match read_all(&path) {
            Ok(errors) => {
                for e in errors {
                    prop_assert_eq!(e.path(), path.as_path());
                    prop_assert_eq!(e.record(), hit.map(|i| i as u64));
                }
            }
            Err(e) => prop_assert_eq!(e.path(), path.as_path()),
        }
    }

    /// Random garbage written over a random span: no panic, and the damage is reported.
    #[test]
    fn overwritten_span_is_detected(records in prop::collection::vec(record_strategy(), 1..6), pick in any::<u64>(), junk in prop::collection::vec(any::<u8>(), 1..64)) {
        let (_dir, path, mut bytes) = shard_with(&records);
        let at = (pick % bytes.len() as u64) as usize;
        let end = (at + junk.len()).min(bytes.len());
        let before = bytes[at..end].to_vec();
        bytes[at..end].copy_from_slice(&junk[..end - at]);
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_all(&path);
        let (_, problems) = check_shard(&path);
        prop_assert_eq!(problems.is_empty(), before == bytes[at..end]);
    }
}

#[test]
fn truncation_at_every_length_is_rejected() {
    let records: Vec<OwnedRecord> = (0..5u64)
        .map(|i| OwnedRecord {
            id: i,
            key: format!("dir/img{i}.jpg"),
            label: Some(i as i64),
            width: 10,
            height: 20,
            content_type: silt_shards::ContentType::Jpeg,
            bytes: vec![0xAB; 37 * i as usize + 1],
        })
        .collect();
    let (_dir, path, bytes) = shard_with(&records);
    let short = path.with_file_name("short.silt");
    for len in 0..bytes.len() {
        std::fs::write(&short, &bytes[..len]).unwrap();
        let err = ShardReader::open(&short).expect_err("a truncated shard must not open");
        assert_eq!(err.path(), short.as_path(), "len {len}: {err}");
        assert!(matches!(err, Error::Corrupt { .. } | Error::BadMagic { .. }), "len {len}: {err}");
        assert!(!check_shard(&short).1.is_empty());
    }
    // Extra bytes after the footer are rejected too (the footer must be last).
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 8]);
    std::fs::write(&short, &long).unwrap();
    assert!(ShardReader::open(&short).is_err());
}

#[test]
fn bad_magic_and_future_version_have_clear_errors() {
    let (_dir, path, bytes) = shard_with(&[]);
    let mut b = bytes.clone();
    b[0] = b'X';
    std::fs::write(&path, &b).unwrap();
    let e = ShardReader::open(&path).unwrap_err();
    assert!(matches!(e, Error::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("victim.silt") && e.to_string().contains("not a silt shard"));

    let mut b = bytes.clone();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    std::fs::write(&path, &b).unwrap();
    let e = ShardReader::open(&path).unwrap_err();
    assert!(matches!(e, Error::UnsupportedVersion { major: 2, .. }), "{e}");
    assert!(e.to_string().contains("version 2.0 is not supported"), "{e}");
}

/// Corruptions that keep every checksum valid (a buggy or hostile writer): index entries that
/// point outside the file, and lengths in a record header far larger than the file.
#[test]
fn consistent_checksums_with_hostile_offsets_and_lengths() {
    let records: Vec<OwnedRecord> = (0..3u64)
        .map(|i| OwnedRecord {
            id: i,
            key: "k".into(),
            label: None,
            width: 0,
            height: 0,
            content_type: silt_shards::ContentType::Unknown,
            bytes: vec![1; 16],
        })
        .collect();
    let (_dir, path, bytes) = shard_with(&records);
    let n = bytes.len();
    let footer_at = n - FOOTER_LEN as usize;
    let index_at = u64::from_le_bytes(bytes[footer_at..footer_at + 8].try_into().unwrap()) as usize;

    let reseal = |b: &mut Vec<u8>| {
        let crc = crc32c::crc32c(&b[index_at..footer_at]);
        b[footer_at + 24..footer_at + 28].copy_from_slice(&crc.to_le_bytes());
        let fcrc = crc32c::crc32c(&b[footer_at..footer_at + 36]);
        b[footer_at + 36..footer_at + 40].copy_from_slice(&fcrc.to_le_bytes());
    };
    for (what, field, value) in [
        ("offset beyond the file", 16usize, u64::MAX - 7),
        ("offset into the header", 16, 8),
        ("huge slot length", 8, 1 << 60),
        ("slot overlapping the index", 24, (n as u64) * 2),
    ] {
        let mut b = bytes.clone();
        b[index_at + field..index_at + field + 8].copy_from_slice(&value.to_le_bytes());
        reseal(&mut b);
        std::fs::write(&path, &b).unwrap();
        let e = ShardReader::open(&path).expect_err(what);
        assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e}");
    }
    // Footer claiming an absurd record count.
    let mut b = bytes.clone();
    b[footer_at + 8..footer_at + 16].copy_from_slice(&(u64::MAX / 3).to_le_bytes());
    reseal(&mut b);
    std::fs::write(&path, &b).unwrap();
    assert!(matches!(ShardReader::open(&path), Err(Error::Corrupt { .. })));

    // A record header with a huge payload length and its CRC recomputed.
    let slot = HEADER_LEN as usize; // record 0 starts right after the file header
    let slot_len = u64::from_le_bytes(bytes[index_at + 8..index_at + 16].try_into().unwrap()) as usize;
    for huge in [u64::MAX, 1 << 40, 25] {
        let mut b = bytes.clone();
        b[slot + 32..slot + 40].copy_from_slice(&huge.to_le_bytes());
        let crc = crc32c::crc32c(&b[slot + 4..slot + slot_len]);
        b[slot..slot + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        let r = ShardReader::open(&path).unwrap();
        let e = r.record_checked(0).unwrap_err();
        assert!(matches!(e, Error::CorruptRecord { record: 0, .. }), "{e}");
        assert!(e.to_string().contains("record 0"), "{e}");
        assert!(r.record(1).is_ok(), "the other records stay readable");
    }
}

#[test]
fn hostile_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |i: u64| OwnedRecord { id: i, key: "k".into(), label: None, width: 0, height: 0, content_type: silt_shards::ContentType::Unknown, bytes: vec![] };
    let (w, _) = silt_shards::DatasetWriter::open(dir.path(), silt_shards::DatasetWriterOptions { max_records_per_shard: Some(1), ..Default::default() }).unwrap();
    let mut sw = w.shard_writer();
    sw.append(&rec(0).as_record()).unwrap();
    sw.append(&rec(1).as_record()).unwrap();
    sw.finish().unwrap();
    let good = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    for (what, text) in [
        ("a path outside the directory", good.replace("\"shard-000001.silt\"", "\"../etc/passwd\"")),
        ("a shard listed twice", good.replace("\"shard-000001.silt\"", "\"shard-000000.silt\"")),
        ("wrong totals", good.replacen("\"records\": 2", "\"records\": 3", 1)),
        ("a future version", good.replacen("\"version\": 1", "\"version\": 9", 1)),
        ("not JSON", "{\"format\": ".to_string()),
    ] {
        std::fs::write(dir.path().join("manifest.json"), &text).unwrap();
        let e = silt_shards::Manifest::load(dir.path()).expect_err(what);
        assert!(matches!(e, Error::Manifest { .. }), "{what}: {e}");
        assert!(e.to_string().contains("manifest.json"), "{what}: {e}");
    }
}
