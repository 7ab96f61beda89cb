//! Feature snapshots: round trip (f32, f16), several ranks concatenated, atomic publish, and a
//! clear error for every kind of corruption.

use silt::cluster::snapshot::{FeatureDtype, OpenMode, Snapshot, SnapshotSet, SnapshotWriter};
use silt::cluster::ClusterError;
use std::path::Path;

fn rows(n: usize, d: usize, offset: usize) -> Vec<f32> {
    (0..n * d).map(|i| ((i + offset * 1000) as f32 * 0.37).sin()).collect()
}

fn write(path: &Path, n: usize, d: usize, rank: u32, dtype: FeatureDtype) -> Vec<f32> {
    let x = rows(n, d, rank as usize);
    let mut w = SnapshotWriter::create(path, d, dtype, rank, 3).unwrap();
    let ids: Vec<u64> = (0..n as u64).map(|i| rank as u64 * 1_000_000 + i).collect();
    // Push in two pieces, as a trainer does batch by batch.
    let half = n / 2;
    w.push(&ids[..half], &x[..half * d]).unwrap();
    w.push(&ids[half..], &x[half * d..]).unwrap();
    let h = w.finish().unwrap();
    assert_eq!((h.n, h.d, h.rank), (n as u64, d as u64, rank));
    x
}

#[test]
fn ranks_concatenate_in_rank_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = 5;
    let sizes = [7usize, 0, 11];
    let mut expected = vec![Vec::new(); 3];
    let mut paths = Vec::new();
    // Written out of order on purpose; the set orders by the rank in the header.
    for rank in [2u32, 0, 1] {
        let p = dir.path().join(format!("features.rank{rank}.silt"));
        expected[rank as usize] = write(&p, sizes[rank as usize], d, rank, FeatureDtype::F32);
        paths.push(p);
    }
    let set = SnapshotSet::open(&paths, OpenMode::Verify).unwrap();
    assert_eq!((set.len(), set.dim()), (18, 5));
    assert_eq!(set.to_vec(), expected.concat());
    let ids = set.ids();
    assert_eq!(ids[..7], (0..7).collect::<Vec<u64>>()[..]);
    assert_eq!(ids[7..], (2_000_000..2_000_011).collect::<Vec<u64>>()[..]);
    // f32 blocks are borrowed from the map, not copied.
    assert!(set.blocks().all(|b| matches!(b, std::borrow::Cow::Borrowed(_))));
}

#[test]
fn f16_snapshots_round_trip_within_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f16.silt");
    let x = write(&p, 20, 8, 0, FeatureDtype::F16);
    let s = Snapshot::open(&p, OpenMode::Verify).unwrap();
    let back = s.features();
    let max = x.iter().zip(back.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 1e-3, "{max}");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 64 + 20 * 8 * 2 + 20 * 8);
}

#[test]
fn unfinished_writer_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.silt");
    let mut w = SnapshotWriter::create(&p, 4, FeatureDtype::F32, 0, 1).unwrap();
    w.push(&[1], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    drop(w);
    assert!(!p.exists());
}

#[test]
fn corruption_gives_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rank0.silt");
    write(&p, 10, 4, 0, FeatureDtype::F32);
    let good = std::fs::read(&p).unwrap();
    let check = |bytes: &[u8], mode: OpenMode, want: &str| {
        std::fs::write(&p, bytes).unwrap();
        let e = Snapshot::open(&p, mode).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("rank0.silt") && msg.contains(want), "want `{want}` in: {msg}");
        e
    };
    // A flipped feature bit: found by the checksum.
    let mut b = good.clone();
    b[64 + 13] ^= 0x10;
    check(&b, OpenMode::Verify, "feature data checksum");
    // ... a flipped id bit too.
    let mut b = good.clone();
    let last = b.len() - 3;
    b[last] ^= 1;
    check(&b, OpenMode::Verify, "record id checksum");
    // Truncation is caught even without verification.
    check(&good[..good.len() - 8], OpenMode::Trust, "truncated");
    // A damaged header.
    let mut b = good.clone();
    b[20] ^= 1;
    check(&b, OpenMode::Trust, "header checksum");
    // Not a snapshot at all.
    check(b"hello world, this is not a feature snapshot at all.............................", OpenMode::Trust, "bad magic");
    // A future major version.
    let mut b = good.clone();
    b[8] = 9;
    let e = check(&b, OpenMode::Trust, "version 9.0");
    assert!(matches!(e, ClusterError::IncompatibleVersion { .. }));
}

#[test]
fn mismatched_dimensions_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.silt");
    let b = dir.path().join("b.silt");
    write(&a, 3, 4, 0, FeatureDtype::F32);
    write(&b, 3, 5, 1, FeatureDtype::F32);
    let e = SnapshotSet::open(&[a, b], OpenMode::Trust).unwrap_err().to_string();
    assert!(e.contains("dimension 5 differs from 4"), "{e}");
}
