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
    fashion_shards_sized(out, split, &[n])
}

/// The first Σ`sizes` images of a split as a PNG shard dataset at `out`, one shard per entry of
/// `sizes`, with that many records.
pub fn fashion_shards_sized(out: &Path, split: &str, sizes: &[usize]) -> PathBuf {
    let (writer, _) = DatasetWriter::open(out, DatasetWriterOptions::default()).unwrap();
    let images = fashion(split, sizes.iter().sum());
    let mut start = 0;
    for &size in sizes {
        let mut w = writer.shard_writer();
        for (i, (px, label)) in images[start..start + size].iter().enumerate() {
            let i = start + i;
            let mut png = Vec::new();
            let img = image::GrayImage::from_raw(28, 28, px.clone()).unwrap();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            let key = format!("{split}/{i:05}");
            w.append(&Record { id: i as u64, key: &key, label: Some(*label), width: 28, height: 28, content_type: ContentType::sniff(&png), bytes: &png }).unwrap();
        }
        w.finish().unwrap();
        start += size;
    }
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

/// A finished short training run on real data; its files live until this is dropped.
pub struct ShortRun {
    _dir: tempfile::TempDir,
    /// The run directory (metrics.jsonl, pseudo_labels.tsv, checkpoints/).
    pub run: PathBuf,
    /// kNN top-1 of every evaluation: the random network first, then after each epoch.
    pub knn: Vec<f64>,
    pub seconds: f64,
}

/// `silt train --method METHOD` on the first `train_images` Fashion-MNIST training images,
/// evaluated on the first `test_images` test images before training and after every epoch: the
/// small CNN on 28-pixel crops, one loader worker and one torch thread, seed 3, every step
/// logged, no mid-run checkpoints; `extra` flags go last.
pub fn short_run(method: &str, train_images: usize, test_images: usize, extra: &[&str]) -> ShortRun {
    let dir = tempfile::tempdir().unwrap();
    let train = fashion_shards(&dir.path().join("data/train"), "train", train_images);
    let test = fashion_shards(&dir.path().join("data/test"), "t10k", test_images);
    let run = dir.path().join("run");
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let mut args: Vec<String> = vec!["train".into(), p(&train), "--method".into(), method.into(), "--eval-data".into(), p(&test), "--run-dir".into(), p(&run)];
    let common = ["--arch", "small", "--crop", "28", "--workers", "1", "--threads", "1", "--seed", "3", "--log-every", "1", "--checkpoint-every", "0"];
    args.extend(common.iter().chain(extra).map(|s| s.to_string()));
    let t0 = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt")).args(&args).output().unwrap();
    assert!(out.status.success(), "silt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let seconds = t0.elapsed().as_secs_f64();
    let knn = metrics(&run, "eval").iter().map(|v| v["knn_top1"].as_f64().unwrap()).collect();
    ShortRun { _dir: dir, run, knn, seconds }
}
