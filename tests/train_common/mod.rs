//! Helpers shared by the trainer tests: labelled real data (Fashion-MNIST) as shards.
#![allow(dead_code)]

use silt_shards::{ContentType, DatasetWriter, DatasetWriterOptions, Record};
use std::path::{Path, PathBuf};

pub fn data_dir() -> PathBuf {
    let home = std::env::var("SILT_HOME").unwrap_or_else(|_| format!("{}/.cache/silt", std::env::var("HOME").unwrap_or_default()));
    PathBuf::from(home).join("data")
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The first `n` images of a Fashion-MNIST split ("train" or "t10k") as (28x28 pixels, label).
pub fn fashion(split: &str, n: usize) -> Vec<(Vec<u8>, i64)> {
    let dir = data_dir().join("fashion-mnist");
    let images = std::fs::read(dir.join(format!("{split}-images-idx3-ubyte"))).expect("Fashion-MNIST missing: run ops/get-data");
    let labels = std::fs::read(dir.join(format!("{split}-labels-idx1-ubyte"))).expect("Fashion-MNIST labels missing: run ops/get-data");
    assert_eq!(be32(&images, 0), 2051);
    assert_eq!(be32(&labels, 0), 2049);
    let count = be32(&images, 4).min(n);
    (0..count).map(|i| (images[16 + i * 784..16 + (i + 1) * 784].to_vec(), labels[8 + i] as i64)).collect()
}

/// Writes the first `n` images of a split as a PNG shard dataset at `out`.
pub fn fashion_shards(out: &Path, split: &str, n: usize) -> PathBuf {
    let (writer, _) = DatasetWriter::open(out, DatasetWriterOptions::default()).unwrap();
    let mut w = writer.shard_writer();
    for (i, (px, label)) in fashion(split, n).into_iter().enumerate() {
        let mut png = Vec::new();
        let img = image::GrayImage::from_raw(28, 28, px).unwrap();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let key = format!("{split}/{i:05}");
        w.append(&Record { id: i as u64, key: &key, label: Some(label), width: 28, height: 28, content_type: ContentType::sniff(&png), bytes: &png }).unwrap();
    }
    w.finish().unwrap();
    out.to_path_buf()
}

/// The venv's python with torch and torchvision (ops/setup), or None.
pub fn python() -> Option<String> {
    let py = std::env::var("SILT_PYTHON").ok()?;
    let ok = std::process::Command::new(&py).args(["-c", "import torch, torchvision, numpy"]).status().ok()?.success();
    ok.then_some(py)
}

/// Every line of a run's metrics.jsonl with the given kind.
pub fn metrics(run: &Path, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).filter(|v| v["kind"] == kind).collect()
}
