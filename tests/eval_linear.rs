//! Linear probes on real Fashion-MNIST / MNIST pixels: accuracy in the known range of logistic
//! regression on raw pixels, parity of two epochs with PyTorch (same init, order and updates,
//! tests/py/eval_linear.py), schedules, `pool_below` shapes and input checks.

use silt::cluster::npy;
use silt::eval::{
    epoch_order, init_weights, linear_probe, pool_below, pool_kernel, EvalError, FeatureNorm, LinearProbeConfig, Schedule,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use tch::{Device, Kind, Tensor};

mod train_common;
use train_common::{data_dir, read_idx};

/// The first `n` images of a split as f32 pixels in [0, 1] (row-major n × 784) and labels.
fn split(set: &str, prefix: &str, n: usize) -> (Vec<f32>, Vec<i64>, usize) {
    let dir = data_dir().join(set);
    let (dims, px) = read_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")));
    let (_, labels) = read_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")));
    let n = n.min(dims[0]);
    let d = dims[1] * dims[2];
    (px[..n * d].iter().map(|&p| p as f32 / 255.0).collect(), labels[..n].iter().map(|&l| l as i64).collect(), n)
}

fn tensor(x: &[f32], n: usize) -> Tensor {
    Tensor::from_slice(x).reshape([n as i64, (x.len() / n) as i64])
}

fn python() -> PathBuf {
    let p = std::env::var_os("SILT_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/silt/venv/bin/python")
    });
    assert!(p.exists(), "the Python oracle {} is missing: run ops/setup (creates the torch venv), then `source ~/.cache/silt/env`", p.display());
    p
}

#[test]
fn probe_on_fashion_mnist_pixels_reaches_logistic_regression_accuracy() {
    let (x, y, n) = split("fashion-mnist", "train", 60_000);
    let (xt, yt, m) = split("fashion-mnist", "t10k", 10_000);
    let cfg = LinearProbeConfig {
        epochs: 8,
        batch_size: 256,
        lr: 0.05,
        weight_decay: 1e-4,
        momentum: 0.9,
        schedule: Schedule::Cosine,
        seed: 3,
        norm: FeatureNorm::Standardize,
    };
    let r = linear_probe(&tensor(&x, n), &y, &tensor(&xt, m), &yt, 10, &cfg).unwrap();
    println!("Fashion-MNIST raw pixels, 60k/10k, standardised, 8 epochs cosine lr 0.05:");
    println!("  epoch losses {:?}", r.epoch_loss.iter().map(|l| format!("{l:.4}")).collect::<Vec<_>>());
    println!("  train top-1 {:.4}  test top-1 {:.4}  top-5 {:.4}", r.train_top1, r.top1, r.top5);
    assert_eq!(r.epoch_loss.len(), 8);
    assert!(r.epoch_loss.last().unwrap() < &r.epoch_loss[0]);
    assert!(r.top1 > 0.80 && r.top1 < 0.90, "test top-1 {} outside the raw-pixel logistic-regression range", r.top1);
    assert!(r.top5 > 0.98, "top-5 {}", r.top5);
    assert_eq!(r.predictions.len(), m);
    assert_eq!(r.weight.size(), [10, 784]);
    assert!(*r.epoch_lr.last().unwrap() < 0.01);
}

#[test]
fn bottou_and_batchnorm_variants_learn_mnist() {
    let (x, y, n) = split("mnist", "train", 10_000);
    let (xt, yt, m) = split("mnist", "t10k", 2_000);
    for (norm, schedule) in [(FeatureNorm::None, Schedule::Bottou), (FeatureNorm::BatchNorm, Schedule::Bottou), (FeatureNorm::Standardize, Schedule::Constant)] {
        let cfg = LinearProbeConfig { epochs: 4, batch_size: 128, lr: 0.05, weight_decay: 1e-4, schedule, norm, ..LinearProbeConfig::default() };
        let r = linear_probe(&tensor(&x, n), &y, &tensor(&xt, m), &yt, 10, &cfg).unwrap();
        println!("MNIST 10k/2k {norm:?} {schedule:?}: loss {:.4} -> {:.4}, test top-1 {:.4}", r.epoch_loss[0], r.epoch_loss[3], r.top1);
        assert!(r.top1 > 0.85, "{norm:?} {schedule:?}: top-1 {}", r.top1);
    }
}

/// Two epochs on 2,000 Fashion-MNIST rows with batch 128 (the last batch has 80 rows), against
/// torch.nn.Linear + F.cross_entropy + torch.optim.SGD from the same start and order.
fn parity(norm: FeatureNorm, schedule: Schedule, tag: &str) {
    let (x, y, n) = split("fashion-mnist", "train", 2_000);
    let (xt, yt, m) = split("fashion-mnist", "t10k", 1_000);
    let cfg = LinearProbeConfig { epochs: 2, batch_size: 128, lr: 0.05, weight_decay: 5e-4, momentum: 0.9, schedule, seed: 11, norm };
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(format!("{f}.npy"));
    npy::write(&p("x_train"), &[n, 784], &x).unwrap();
    npy::write(&p("y_train"), &[n], &y).unwrap();
    npy::write(&p("x_test"), &[m, 784], &xt).unwrap();
    npy::write(&p("y_test"), &[m], &yt).unwrap();
    npy::write(&p("w0"), &[10, 784], &init_weights(784, 10, cfg.seed)).unwrap();
    let orders: Vec<i64> = (0..cfg.epochs).flat_map(|e| epoch_order(n, cfg.seed, e)).collect();
    npy::write(&p("orders"), &[cfg.epochs, n], &orders).unwrap();

    let ours = linear_probe(&tensor(&x, n), &y, &tensor(&xt, m), &yt, 10, &cfg).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/eval_linear.py");
    let sched = match schedule {
        Schedule::Bottou => "bottou",
        Schedule::Cosine => "cosine",
        Schedule::Constant => "constant",
    };
    let normarg = match norm {
        FeatureNorm::None => "none",
        FeatureNorm::Standardize => "standardize",
        FeatureNorm::BatchNorm => "batchnorm",
    };
    let out = Command::new(python())
        .arg(&script)
        .args(["--dir", dir.path().to_str().unwrap(), "--epochs", "2", "--bs", "128", "--lr", "0.05", "--wd", "5e-4", "--momentum", "0.9"])
        .args(["--schedule", sched, "--norm", normarg])
        .output()
        .expect("running the python oracle");
    assert!(out.status.success(), "python oracle failed (run ops/setup?): {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let py: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let py_loss: Vec<f64> = py["epoch_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let py_top1 = py["top1"].as_f64().unwrap();
    let w_py = npy::NpyFile::open(&dir.path().join("w.npy")).unwrap().to_f32().unwrap();
    let b_py = npy::NpyFile::open(&dir.path().join("b.npy")).unwrap().to_f32().unwrap();
    let w: Vec<f32> = Vec::try_from(ours.weight.flatten(0, -1)).unwrap();
    let b: Vec<f32> = Vec::try_from(&ours.bias).unwrap();
    let dw = w.iter().zip(&w_py).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let db = b.iter().zip(&b_py).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let wmax = w_py.iter().map(|v| v.abs()).fold(0f32, f32::max);
    println!("{tag}: losses silt {:?} torch {:?}", ours.epoch_loss, py_loss);
    println!("{tag}: max |Δw| {dw:.3e} (max |w| {wmax:.3e}), max |Δb| {db:.3e}; top-1 silt {:.4} torch {py_top1:.4}", ours.top1);
    for (a, b) in ours.epoch_loss.iter().zip(&py_loss) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{tag}: epoch loss {a} vs {b}");
    }
    assert!(dw <= 2e-5 * wmax.max(1e-2), "{tag}: weights differ by {dw}");
    assert!(db <= 2e-5, "{tag}: biases differ by {db}");
    let differ = ours.predictions.iter().zip(py["predictions"].as_array().unwrap()).filter(|(a, b)| **a != b.as_i64().unwrap()).count();
    assert!(differ <= 2, "{tag}: {differ} test predictions differ");
    assert!((ours.top1 - py_top1).abs() <= differ as f64 / m as f64 + 1e-9);
}

#[test]
fn two_epochs_match_pytorch_standardize_bottou() {
    parity(FeatureNorm::Standardize, Schedule::Bottou, "standardize+bottou");
}

#[test]
fn two_epochs_match_pytorch_batchnorm_cosine() {
    parity(FeatureNorm::BatchNorm, Schedule::Cosine, "batchnorm+cosine");
}

#[test]
fn two_epochs_match_pytorch_raw_constant() {
    parity(FeatureNorm::None, Schedule::Constant, "none+constant");
}

#[test]
fn schedules_follow_their_formulas() {
    let (lr0, wd) = (0.01, 1e-5);
    assert_eq!(Schedule::Constant.lr(lr0, wd, 500, 1000), lr0);
    assert_eq!(Schedule::Bottou.lr(lr0, wd, 0, 1000), lr0);
    let t = 1_000_000;
    assert!((Schedule::Bottou.lr(lr0, wd, t, 0) - lr0 / (1.0 + lr0 * wd * t as f64).sqrt()).abs() < 1e-15);
    assert_eq!(Schedule::Cosine.lr(0.3, 0.0, 0, 100), 0.3);
    assert!((Schedule::Cosine.lr(0.3, 0.0, 50, 100) - 0.15).abs() < 1e-12);
    assert!(Schedule::Cosine.lr(0.3, 0.0, 100, 100).abs() < 1e-12);
}

#[test]
fn init_and_order_are_seeded() {
    let w = init_weights(784, 10, 5);
    assert_eq!(w, init_weights(784, 10, 5));
    assert_ne!(w, init_weights(784, 10, 6));
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / w.len() as f64;
    let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    assert!(mean.abs() < 1e-3 && (std - 0.01).abs() < 5e-4, "init mean {mean} std {std}");
    let o = epoch_order(1000, 5, 0);
    assert_ne!(o, epoch_order(1000, 5, 1));
    let mut sorted = o.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1000).collect::<Vec<i64>>());
}

#[test]
fn pool_below_gives_the_documented_shapes() {
    // DeeperCluster VGG16 probe sizes (methods §3.1) and AlexNet conv2 (DeepCluster 9216).
    for (c, hw, k, dim) in [
        (64, 224, 18, 9216),
        (128, 112, 13, 8192),
        (256, 56, 9, 9216),
        (512, 28, 6, 8192),
        (512, 14, 3, 8192),
        (256, 27, 4, 9216),
        (384, 13, 3, 6144),
        (96, 55, 6, 7776),
    ] {
        assert_eq!(pool_kernel(c, hw, hw, 10_000), k, "C {c} H=W {hw}");
        let x = Tensor::ones([2, c as i64, hw as i64, hw as i64], (Kind::Float, Device::Cpu));
        let p = pool_below(&x, 10_000);
        assert_eq!(p.size(), [2, dim as i64], "C {c} H=W {hw}");
        assert!(dim < 10_000);
        assert!((p.mean(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
    }
    // Already small: no pooling (k = 1), just flattened.
    let x = Tensor::randn([3, 8, 5, 5], (Kind::Float, Device::Cpu));
    assert_eq!(pool_kernel(8, 5, 5, 10_000), 1);
    assert_eq!(pool_below(&x, 10_000), x.flatten(1, -1));
    // Averages k×k blocks (floor mode): 1×1×4×5 with k = 2 -> 2×2 block means.
    let x = Tensor::arange(20, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 5]);
    let p = pool_below(&x, 5);
    assert_eq!(p.size(), [1, 4]);
    assert_eq!(Vec::<f32>::try_from(p.flatten(0, -1)).unwrap(), vec![3.0, 5.0, 13.0, 15.0]);
    // Nothing gets below: global average pool.
    let x = Tensor::ones([1, 20_000, 2, 2], (Kind::Float, Device::Cpu));
    assert_eq!(pool_below(&x, 10_000).size(), [1, 20_000]);
    // Flat input passes through.
    let x = Tensor::ones([4, 2048], (Kind::Float, Device::Cpu));
    assert_eq!(pool_below(&x, 10_000).size(), [4, 2048]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = Tensor::randn([20, 8], (Kind::Float, Device::Cpu));
    let y: Vec<i64> = (0..20).map(|i| i % 3).collect();
    let cfg = LinearProbeConfig { epochs: 1, ..LinearProbeConfig::default() };
    let e = linear_probe(&x, &y, &Tensor::randn([4, 7], (Kind::Float, Device::Cpu)), &y[..4], 3, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Shape(_)), "{e}");
    let e = linear_probe(&x, &y, &x, &y, 2, &cfg).unwrap_err();
    assert!(matches!(e, EvalError::Labels(_)), "{e}");
    let e = linear_probe(&x, &y, &x, &y, 3, &LinearProbeConfig { batch_size: 0, ..cfg }).unwrap_err();
    assert!(matches!(e, EvalError::Config(_)), "{e}");
    let e = linear_probe(&x, &y, &x, &y, 3, &LinearProbeConfig { momentum: 1.5, ..cfg }).unwrap_err();
    assert!(matches!(e, EvalError::Config(_)), "{e}");
    let e = linear_probe(&(x.shallow_clone() * 1e30), &y, &x, &y, 3, &LinearProbeConfig { lr: 1e30, epochs: 3, ..cfg }).unwrap_err();
    assert!(matches!(e, EvalError::Diverged(_)), "{e}");
}
