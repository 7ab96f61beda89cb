//! Helpers shared by the trainer tests: labelled real data (Fashion-MNIST) as shards.
#![allow(dead_code)]

use silt_shards::{ContentType, DatasetWriter, DatasetWriterOptions, Record};
use std::path::{Path, PathBuf};

/// Where ops/get-data put the real data: $SILT_DATA, else $SILT_HOME/data, else ~/.cache/silt/data.
pub fn data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SILT_DATA") {
        return PathBuf::from(d);
    }
    let home = std::env::var("SILT_HOME").unwrap_or_else(|_| format!("{}/.cache/silt", std::env::var("HOME").unwrap_or_default()));
    PathBuf::from(home).join("data")
}

/// An IDX file (big-endian header, u8 payload) as (dims, bytes).
pub fn read_idx(path: &Path) -> (Vec<usize>, Vec<u8>) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (run ops/get-data)", path.display()));
    assert!(raw.len() > 8 && raw[2] == 0x08, "{}: not a u8 IDX file", path.display());
    let ndim = raw[3] as usize;
    let dims: Vec<usize> = (0..ndim).map(|i| u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let payload = raw[4 + 4 * ndim..].to_vec();
    assert_eq!(payload.len(), dims.iter().product::<usize>(), "{}", path.display());
    (dims, payload)
}

/// The first `n` images of a Fashion-MNIST split ("train" or "t10k") as (28x28 pixels, label).
pub fn fashion(split: &str, n: usize) -> Vec<(Vec<u8>, i64)> {
    let dir = data_dir().join("fashion-mnist");
    let (dims, images) = read_idx(&dir.join(format!("{split}-images-idx3-ubyte")));
    let (_, labels) = read_idx(&dir.join(format!("{split}-labels-idx1-ubyte")));
    assert_eq!(&dims[1..], &[28, 28]);
    (0..dims[0].min(n)).map(|i| (images[i * 784..(i + 1) * 784].to_vec(), labels[i] as i64)).collect()
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
