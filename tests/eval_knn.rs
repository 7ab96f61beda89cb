//! Weighted kNN (InstDisc/MoCo) on real Fashion-MNIST pixels against a plain torch
//! implementation of the same formula (tests/py/eval_knn.py), plus chunking and input checks.

use silt::eval::{knn_eval, EvalError, KnnConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::Tensor;

mod train_common;
use train_common::{data_dir, read_idx};

/// The first `n` images of a split (`train` or `t10k`) as [n, 784] float pixels in [0, 1].
fn split(set: &str, prefix: &str, n: usize) -> (Tensor, Vec<i64>) {
    let dir = data_dir().join(set);
    let (dims, px) = read_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")));
    let (_, labels) = read_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")));
    let n = n.min(dims[0]);
    let d = dims[1] * dims[2];
    let x: Vec<f32> = px[..n * d].iter().map(|&p| p as f32 / 255.0).collect();
    (Tensor::from_slice(&x).reshape([n as i64, d as i64]), labels[..n].iter().map(|&l| l as i64).collect())
}

/// The venv's python (torch, numpy); a missing venv fails the test, pointing at ops/setup.
fn python() -> PathBuf {
    let p = std::env::var_os("SILT_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/silt/venv/bin/python")
    });
    assert!(p.exists(), "the Python oracle {} is missing: run ops/setup (creates the torch venv), then `source ~/.cache/silt/env`", p.display());
    p
}

#[test]
fn knn_matches_torch_on_fashion_mnist_pixels() {
    let (n, m) = (10_000, 2_000);
    let (xtr, ytr) = split("fashion-mnist", "train", n);
    let (xte, yte) = split("fashion-mnist", "t10k", m);
    // A chunk that does not divide the test set exercises the last, short block.
    let cfg = KnnConfig { k: 200, temperature: 0.07, chunk: 300 };
    let ours = knn_eval(&xtr, &ytr, &xte, &yte, 10, &cfg).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/eval_knn.py");
    let out = Command::new(python())
        .arg(&script)
        .args(["--data", data_dir().join("fashion-mnist").to_str().unwrap()])
        .args(["--train", &n.to_string(), "--test", &m.to_string(), "--k", "200", "--t", "0.07"])
        .output()
        .expect("running the python oracle");
    assert!(out.status.success(), "python oracle failed (run ops/setup?): {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let py: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let py_top1 = py["top1"].as_f64().unwrap();
    let py_top5 = py["top5"].as_f64().unwrap();
    let py_pred: Vec<i64> = py["predictions"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    let scores: Vec<Vec<f64>> =
        py["scores"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()).collect();

    println!("Fashion-MNIST raw pixels, {n} train / {m} test, k 200, T 0.07:");
    println!("  silt  top-1 {:.4}  top-5 {:.4}", ours.top1, ours.top5);
    println!("  torch top-1 {:.4}  top-5 {:.4}", py_top1, py_top5);

    // Predictions identical except where the reference's class scores tie (relative 1e-4).
    let mut differ = 0;
    for (i, (&a, &b)) in ours.predictions.iter().zip(&py_pred).enumerate() {
        if a != b {
            differ += 1;
            let best = scores[i][b as usize];
            let ours_score = scores[i][a as usize];
            assert!(
                (best - ours_score).abs() <= 1e-4 * best.abs(),
                "row {i}: silt predicts {a} (score {ours_score}), torch {b} (score {best}): not a tie"
            );
        }
    }
    println!("  predictions differing (ties): {differ} / {m}");
    assert_eq!(ours.predictions.len(), m);
    assert!((ours.top1 - py_top1).abs() <= differ as f64 / m as f64 + 1e-9);
    assert!((ours.top5 - py_top5).abs() <= differ as f64 / m as f64 + 1e-9);
    // Raw-pixel kNN from 10k Fashion-MNIST images lands in the 0.7s (0.737 measured).
    assert!(ours.top1 > 0.70 && ours.top5 > 0.95, "top-1 {} top-5 {}", ours.top1, ours.top5);
}

#[test]
fn chunk_size_does_not_change_the_result() {
    let (xtr, ytr) = split("mnist", "train", 3_000);
    let (xte, yte) = split("mnist", "t10k", 500);
    let base = knn_eval(&xtr, &ytr, &xte, &yte, 10, &KnnConfig { chunk: 500, ..KnnConfig::default() }).unwrap();
    for chunk in [1, 7, 64, 10_000] {
        let r = knn_eval(&xtr, &ytr, &xte, &yte, 10, &KnnConfig { chunk, ..KnnConfig::default() }).unwrap();
        let differ = r.predictions.iter().zip(&base.predictions).filter(|(a, b)| a != b).count();
        assert!(differ <= 1, "chunk {chunk}: {differ} predictions differ");
        assert!((r.top1 - base.top1).abs() <= 1.0 / 500.0 + 1e-12);
    }
    println!("MNIST raw pixels 3000/500: top-1 {:.4} top-5 {:.4}", base.top1, base.top5);
    assert!(base.top1 > 0.85, "MNIST raw-pixel kNN top-1 {}", base.top1);
}

#[test]
fn scale_invariant_and_k_capped_at_train_size() {
    let (xtr, ytr) = split("mnist", "train", 300);
    let (xte, yte) = split("mnist", "t10k", 100);
    let a = knn_eval(&xtr, &ytr, &xte, &yte, 10, &KnnConfig::default()).unwrap();
    // Features are L2-normalised inside: scaling rows changes nothing.
    let scale = Tensor::arange_start(1, 301, (tch::Kind::Float, tch::Device::Cpu)).unsqueeze(1);
    let b = knn_eval(&(&xtr * &scale), &ytr, &(&xte * 3.5), &yte, 10, &KnnConfig::default()).unwrap();
    let differ = a.predictions.iter().zip(&b.predictions).filter(|(x, y)| x != y).count();
    assert!(differ <= 1, "{differ} predictions changed by scaling");
    // k larger than the training set: every training point votes.
    let all = knn_eval(&xtr, &ytr, &xte, &yte, 10, &KnnConfig { k: 100_000, ..KnnConfig::default() }).unwrap();
    assert_eq!(all.predictions.len(), 100);
    // One neighbour, tiny temperature: plain 1-NN (its prediction is the nearest row's label).
    let one = knn_eval(&xtr, &ytr, &xte, &yte, 10, &KnnConfig { k: 1, ..KnnConfig::default() }).unwrap();
    let f = |x: &Tensor| x / x.norm_scalaropt_dim(2, [1i64], true);
    let nn = f(&xte).mm(&f(&xtr).t_()).argmax(1, false);
    let expect: Vec<i64> = Vec::<i64>::try_from(nn).unwrap().into_iter().map(|j| ytr[j as usize]).collect();
    assert_eq!(one.predictions, expect);
    // Training on the test set itself with k = 1: every point finds itself.
    let self_r = knn_eval(&xte, &yte, &xte, &yte, 10, &KnnConfig { k: 1, ..KnnConfig::default() }).unwrap();
    assert_eq!(self_r.top1, 1.0);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = Tensor::randn([20, 8], (tch::Kind::Float, tch::Device::Cpu));
    let y: Vec<i64> = (0..20).map(|i| i % 4).collect();
    let cfg = KnnConfig::default();
    let e = knn_eval(&x, &y, &Tensor::randn([5, 9], (tch::Kind::Float, tch::Device::Cpu)), &y[..5], 4, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Shape(_)), "{e}");
    let e = knn_eval(&x, &y[..19], &x, &y, 4, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Labels(_)), "{e}");
    let mut bad = y.clone();
    bad[3] = 4;
    let e = knn_eval(&x, &bad, &x, &y, 4, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Labels(_)) && e.to_string().contains("row 3"), "{e}");
    let e = knn_eval(&x, &y, &x, &y, 4, &KnnConfig { k: 0, ..cfg }).unwrap_err();
    assert!(matches!(e, EvalError::Config(_)), "{e}");
    let e = knn_eval(&x, &y, &x, &y, 4, &KnnConfig { temperature: 0.0, ..cfg }).unwrap_err();
    assert!(matches!(e, EvalError::Config(_)), "{e}");
    let e = knn_eval(&x.flatten(0, -1), &y, &x, &y, 4, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Shape(_)), "{e}");
    let ints = Tensor::zeros([20, 8], (tch::Kind::Int64, tch::Device::Cpu));
    assert!(matches!(knn_eval(&ints, &y, &x, &y, 4, &cfg).unwrap_err(), EvalError::Shape(_)));
    // Fewer than 5 classes: top-5 is trivially 1.
    let r = knn_eval(&x, &y, &x, &y, 4, &cfg).unwrap();
    assert_eq!(r.top5, 1.0);
}
