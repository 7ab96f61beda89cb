//! Random records survive a write/read roundtrip byte for byte.

mod common;
use common::{record_strategy, write_shard};
use proptest::prelude::*;
use silt_shards::{check_shard, ShardReader};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn records_roundtrip(records in prop::collection::vec(record_strategy(), 0..12)) {
        let dir = tempfile::tempdir().unwrap();
        let path = write_shard(dir.path(), "s.silt", &records);
        let reader = ShardReader::open(&path).unwrap();
        prop_assert_eq!(reader.len(), records.len() as u64);
        for (i, want) in records.iter().enumerate() {
            let got = reader.record_checked(i as u64).unwrap();
            prop_assert_eq!(got.to_owned_record(), want.clone());
            // Payloads start 8-aligned in the file, so they can be viewed in place.
            let offset = got.bytes.as_ptr() as usize - reader.as_bytes().as_ptr() as usize;
            prop_assert_eq!(offset % 8, 0);
        }
        let payload: u64 = records.iter().map(|r| r.bytes.len() as u64).sum();
        prop_assert_eq!(reader.payload_bytes(), payload);
        let (entry, problems) = check_shard(&path);
        prop_assert!(problems.is_empty(), "{:?}", problems);
        prop_assert_eq!(entry.unwrap().crc32c, crc32c::crc32c(&std::fs::read(&path).unwrap()));
    }
}

#[test]
fn reader_is_send_and_sync_and_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ShardReader>();

    let dir = tempfile::tempdir().unwrap();
    let records: Vec<_> = (0..100u64)
        .map(|i| silt_shards::OwnedRecord {
            id: i,
            key: format!("k{i}"),
            label: Some(i as i64 % 7),
            width: 1,
            height: 1,
            content_type: silt_shards::ContentType::RawU8,
            bytes: vec![i as u8; i as usize],
        })
        .collect();
    let reader = ShardReader::open(write_shard(dir.path(), "s.silt", &records)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let reader = &reader;
            s.spawn(move || {
                for i in (t..100).step_by(4) {
                    let r = reader.record_checked(i).unwrap();
                    assert_eq!(r.bytes, vec![i as u8; i as usize].as_slice());
                }
            });
        }
    });
}
