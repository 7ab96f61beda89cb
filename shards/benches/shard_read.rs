//! Shard read throughput on real JPEGs, against a plain memcpy of the same bytes in the same run.
//!
//! Groups (criterion reports bytes/s for each):
//! - `shard_read/memcpy`: copy all payload bytes from one buffer into another (the ceiling);
//! - `shard_read/scan`: every record of every shard in order, every payload byte read;
//! - `shard_read/scan_crc`: the same with each record's CRC32C checked;
//! - `shard_read/random`: single records by random global index, every payload byte read.
//!
//! Data: the real photos of `ops/get-data` (SILT_DATA, default ~/.cache/silt/data/photos).
//! Run with `ops/bench-shards` (from the repository root), which prints the ratios against memcpy.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use silt_shards::{ContentType, Dataset, DatasetWriter, DatasetWriterOptions, Record};
use std::hint::black_box;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    std::env::var_os("SILT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/silt/data"))
}

/// Packs the real photos into 64 MiB shards in a temporary directory.
fn build_dataset() -> (tempfile::TempDir, Dataset) {
    let photos = data_dir().join("photos");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap_or_else(|e| panic!("{}: {e} (run ops/get-data)", photos.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "jpeg"))
        .collect();
    files.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = DatasetWriterOptions { target_shard_bytes: 64 << 20, ..Default::default() };
    let (writer, _) = DatasetWriter::open(dir.path(), opts).expect("open dataset");
    let mut w = writer.shard_writer();
    for (id, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).expect("read photo");
        let key = f.file_name().unwrap().to_string_lossy();
        let rec = Record { id: id as u64, key: &key, label: None, width: 0, height: 0, content_type: ContentType::Jpeg, bytes: &bytes };
        w.append(&rec).expect("append");
    }
    w.finish().expect("finish");
    let ds = Dataset::open(dir.path()).expect("open");
    (dir, ds)
}

/// Reads every byte (8 at a time; the compiler vectorises this) so nothing is skipped.
#[inline]
fn touch(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        acc = acc.wrapping_add(u64::from_le_bytes(c.try_into().unwrap()));
    }
    chunks.remainder().iter().fold(acc, |a, &b| a.wrapping_add(b as u64))
}

fn bench(c: &mut Criterion) {
    let (_dir, ds) = build_dataset();
    let total: u64 = ds.manifest().payload_bytes;
    let n = ds.len();
    let flat: Vec<u8> = (0..n).flat_map(|g| ds.get(g).unwrap().bytes.to_vec()).collect();
    let mut sink = vec![0u8; flat.len()];

    let mut g = c.benchmark_group("shard_read");
    g.throughput(Throughput::Bytes(total)).sample_size(20);
    g.bench_function(BenchmarkId::new("memcpy", n), |b| {
        b.iter(|| {
            sink.copy_from_slice(black_box(&flat));
            black_box(&sink);
        })
    });
    g.bench_function(BenchmarkId::new("scan", n), |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for shard in ds.shards() {
                for r in shard.iter() {
                    acc = acc.wrapping_add(touch(r.unwrap().bytes));
                }
            }
            black_box(acc)
        })
    });
    g.bench_function(BenchmarkId::new("scan_crc", n), |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for shard in ds.shards() {
                for i in 0..shard.len() {
                    acc = acc.wrapping_add(touch(shard.record_checked(i).unwrap().bytes));
                }
            }
            black_box(acc)
        })
    });
    // A fixed pseudo-random permutation (xorshift), so every run reads the same order.
    let mut order: Vec<u64> = (0..n).collect();
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..order.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        order.swap(i, (s % (i as u64 + 1)) as usize);
    }
    g.bench_function(BenchmarkId::new("random", n), |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &i in &order {
                acc = acc.wrapping_add(touch(ds.get(i).unwrap().bytes));
            }
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
