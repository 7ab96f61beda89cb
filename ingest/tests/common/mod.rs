//! Shared helpers for the ingest tests: the real-data directory, running the `silt-ingest`
//! binary, and reading a dataset back.
#![allow(dead_code)]

use silt_shards::Dataset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Real data made by `ops/get-data --with-bad-inputs` (env SILT_DATA, default ~/.cache/silt/data).
pub fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("SILT_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/silt/data"),
    };
    assert!(
        dir.join("photos/photos.tsv").is_file(),
        "no real data at {}: run ops/get-data --with-bad-inputs (or set SILT_DATA)",
        dir.display()
    );
    dir
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_silt-ingest")
}

/// `silt-ingest <args> --quiet --json`, which must succeed; returns the summary.
pub fn ingest(args: &[&str]) -> serde_json::Value {
    let out = ingest_output(args);
    assert!(out.status.success(), "silt-ingest {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn ingest_output(args: &[&str]) -> Output {
    Command::new(bin()).args(args).args(["--quiet", "--json"]).output().expect("silt-ingest runs")
}

/// What a dataset holds, keyed by record id: (key, label, width, height, BLAKE3 of the bytes).
pub type Contents = BTreeMap<u64, (String, Option<i64>, u32, u32, [u8; 32])>;

pub fn contents(dir: &Path) -> Contents {
    let ds = Dataset::open(dir).expect("dataset opens");
    let mut out = Contents::new();
    for shard in ds.shards() {
        for rec in shard.iter() {
            let rec = rec.expect("record reads");
            let prev = out.insert(rec.id, (rec.key.to_string(), rec.label, rec.width, rec.height, *blake3::hash(rec.bytes).as_bytes()));
            assert!(prev.is_none(), "record id {} appears twice", rec.id);
        }
    }
    assert_eq!(out.len() as u64, ds.len());
    out
}

/// Quarantine entries as (index, key, reason).
pub fn quarantine(dir: &Path) -> Vec<(u64, String, String)> {
    let text = std::fs::read_to_string(dir.join("quarantine.jsonl")).unwrap_or_default();
    let mut v: Vec<_> = text
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).expect("quarantine line is JSON");
            (j["index"].as_u64().unwrap(), j["key"].as_str().unwrap().to_string(), j["reason"].as_str().unwrap().to_string())
        })
        .collect();
    v.sort();
    v
}

pub fn reasons(summary: &serde_json::Value) -> BTreeMap<String, u64> {
    summary["reasons"].as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap())).collect()).unwrap_or_default()
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
