//! Helpers shared by the loader tests: real data, shard building, the torchvision reference.
#![allow(dead_code)]

use silt_shards::{ContentType, DatasetWriter, DatasetWriterOptions, Record};
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn data_dir() -> PathBuf {
    let home = std::env::var("SILT_HOME").unwrap_or_else(|_| format!("{}/.cache/silt", std::env::var("HOME").unwrap_or_default()));
    PathBuf::from(home).join("data")
}

/// (file name, width, height) of the real photos, from photos.tsv.
pub fn photos() -> Vec<(String, u32, u32)> {
    let dir = data_dir().join("photos");
    let tsv = std::fs::read_to_string(dir.join("photos.tsv")).expect("real photos missing: run shared/data/get-real-data");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let (f, w, h) = (col("file"), col("width"), col("height"));
    lines
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .map(|r| (r[f].to_string(), r[w].parse().unwrap(), r[h].parse().unwrap()))
        .collect()
}

/// Writes the given files (relative to `base`) as one dataset, labels = position % 10.
pub fn write_dataset(out: &Path, base: &Path, files: &[String], shard_bytes: u64) {
    let opts = DatasetWriterOptions { target_shard_bytes: shard_bytes, ..Default::default() };
    let (writer, _) = DatasetWriter::open(out, opts).unwrap();
    let mut w = writer.shard_writer();
    for (id, f) in files.iter().enumerate() {
        let bytes = std::fs::read(base.join(f)).unwrap();
        let ct = ContentType::sniff(&bytes);
        w.append(&Record { id: id as u64 + 1000, key: f, label: Some(id as i64 % 10), width: 0, height: 0, content_type: ct, bytes: &bytes }).unwrap();
    }
    w.finish().unwrap();
}

/// The venv's python with torchvision, or None (tests then skip with a printed reason).
pub fn python() -> Option<String> {
    let py = std::env::var("SILT_PYTHON").ok()?;
    let ok = Command::new(&py).args(["-c", "import torchvision, PIL, numpy"]).status().ok()?.success();
    ok.then_some(py)
}

pub fn run_ref(py: &str, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/loader_common/torchvision_ref.py");
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "torchvision reference failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A greyscale (1-component) real photo, from photos.tsv's `components` column.
pub fn gray_photo() -> Option<String> {
    let tsv = std::fs::read_to_string(data_dir().join("photos/photos.tsv")).ok()?;
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next()?.split('\t').collect();
    let (f, c) = (header.iter().position(|h| *h == "file")?, header.iter().position(|h| *h == "components")?);
    lines.map(|l| l.split('\t').collect::<Vec<_>>()).find(|r| r[c] == "1").map(|r| r[f].to_string())
}
