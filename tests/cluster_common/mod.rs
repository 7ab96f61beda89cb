//! Helpers shared by the `cluster_*` integration tests: the Python oracle (scikit-learn, numpy,
//! faiss in the project venv named by `SILT_PYTHON`) and the real MNIST data.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Runs `script` with the venv's python, feeding `input` as JSON on stdin, and parses the JSON it
/// prints on its last stdout line. The oracle is live: a missing venv is a test failure, not a
/// skip, because these tests exist to compare against it.
pub fn python_json(script: &str, input: &serde_json::Value) -> serde_json::Value {
    let python = std::env::var("SILT_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} (source ~/.cache/silt/env): {e}"));
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap_or("null");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON from python ({e}): {last}"))
}

/// Directory with the real datasets (`mnist/`, `fashion-mnist/`), made by shared/data/get-real-data.
pub fn data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SILT_DATA") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/silt/data")
}

/// Reads an IDX file (big-endian header; u8 payload): returns (dims, bytes).
pub fn read_idx(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (run shared/data/get-real-data)", path.display()));
    assert_eq!(raw[2], 0x08, "{}: only u8 IDX files", path.display());
    let ndim = raw[3] as usize;
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(raw[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let payload = raw[4 + 4 * ndim..].to_vec();
    assert_eq!(payload.len(), dims.iter().product::<usize>());
    (dims, payload)
}

/// The first `n` MNIST training images as f32 pixels in [0, 1] (n × 784) and their labels.
pub fn mnist(n: usize) -> (Vec<f32>, Vec<i64>) {
    let dir = data_dir().join("mnist");
    let (dims, pixels) = read_idx(&dir.join("train-images-idx3-ubyte"));
    let (_, labels) = read_idx(&dir.join("train-labels-idx1-ubyte"));
    let n = n.min(dims[0]);
    let x = pixels[..n * 784].iter().map(|&p| p as f32 / 255.0).collect();
    let y = labels[..n].iter().map(|&l| l as i64).collect();
    (x, y)
}
