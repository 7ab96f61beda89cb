//! Mixed precision (`--precision bf16`): the autocast switch itself, and every method training
//! under it on real data, with the same loss curve as float32 to bfloat16's precision and float32
//! checkpoints.

mod train_common;

use silt::train::precision::{autocast_enabled, Precision};
use tch::{Device, Kind, Tensor};
use train_common::{metrics, short_run};

#[test]
fn autocast_guard_switches_matmuls_to_bf16_and_restores_the_previous_state() {
    let a = Tensor::randn([8, 16], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
    assert!(Precision::Fp32.enter(Device::Cpu).is_none());
    assert!(!autocast_enabled(Device::Cpu));
    {
        let _outer = Precision::Bf16.enter(Device::Cpu).expect("autocast");
        assert!(autocast_enabled(Device::Cpu));
        assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        {
            let _inner = Precision::Bf16.enter(Device::Cpu).expect("nested autocast");
            assert_eq!(a.matmul(&b).kind(), Kind::BFloat16);
        }
        assert!(autocast_enabled(Device::Cpu), "leaving the inner region keeps the outer one");
        let exact = a.matmul(&b).to_kind(Kind::Float);
        let _guard = tch::no_grad_guard();
        let rel = (&exact - a.matmul(&b).to_kind(Kind::Float)).abs().max().double_value(&[]);
        assert_eq!(rel, 0.0, "same inputs, same bf16 result");
    }
    assert!(!autocast_enabled(Device::Cpu));
    assert_eq!(a.matmul(&b).kind(), Kind::Float);
}

/// The training losses logged by a run, in step order.
fn losses(run: &std::path::Path) -> Vec<f64> {
    metrics(run, "step").iter().map(|v| v["loss"].as_f64().unwrap()).collect()
}

#[test]
fn rotnet_under_bf16_follows_the_float32_loss_curve() {
    let args = ["--epochs", "1", "--max-steps", "8", "--batch-size", "64", "--min-scale", "0.3"];
    let fp32 = short_run("rotnet", 512, 64, &args);
    let bf16 = short_run("rotnet", 512, 64, &[&args[..], &["--precision", "bf16"]].concat());
    let (a, b) = (losses(&fp32.run), losses(&bf16.run));
    println!("rotnet fp32 losses {a:.4?}\nrotnet bf16 losses {b:.4?}\nfp32 {:.1} s, bf16 {:.1} s", fp32.seconds, bf16.seconds);
    assert_eq!(a.len(), 8);
    assert_eq!(b.len(), 8);
    assert_ne!(a, b, "bf16 must change the arithmetic");
    // the first step sees identical weights and data: only bf16 rounding separates the losses
    assert!((a[0] - b[0]).abs() / a[0] < 0.02, "first loss fp32 {} bf16 {}", a[0], b[0]);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!((mean(&a) - mean(&b)).abs() / mean(&a) < 0.05, "mean loss fp32 {} bf16 {}", mean(&a), mean(&b));
    // parameters stay float32 in the checkpoint
    let ckpt = std::fs::read_dir(bf16.run.join("checkpoints")).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "safetensors")).unwrap();
    let tensors = Tensor::read_safetensors(&ckpt).unwrap();
    assert!(tensors.iter().filter(|(n, _)| n.starts_with("trunk.")).all(|(_, t)| matches!(t.kind(), Kind::Float | Kind::Int64)));
}

#[test]
fn every_method_trains_under_bf16() {
    let cases: [(&str, &[&str]); 8] = [
        ("deepcluster", &["--k", "10", "--dim-pca", "16"]),
        ("deepercluster", &["--k", "16", "--dim-pca", "16", "--super-classes", "4", "--reassignment", "1"]),
        ("sela", &["--hc", "2", "--ncl", "8", "--nopts", "2"]),
        ("pic", &[]),
        ("instdisc", &["--nce-k", "0"]),
        ("moco", &["--moco-k", "256"]),
        ("moco-v2", &["--moco-k", "256"]),
        ("simclr", &[]),
    ];
    for (method, extra) in cases {
        let common = ["--precision", "bf16", "--epochs", "1", "--max-steps", "3", "--batch-size", "32", "--min-scale", "0.3"];
        let r = short_run(method, 256, 64, &[&common[..], extra].concat());
        let l = losses(&r.run);
        println!("{method} under bf16: losses {l:.4?}, kNN {:?}", r.knn);
        assert_eq!(l.len(), 3, "{method}");
        assert!(l.iter().all(|x| x.is_finite()), "{method}: {l:?}");
    }
}
