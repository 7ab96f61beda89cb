//! `silt cluster` and `silt cluster metrics` end to end on real MNIST pixels.

mod cluster_common;

use cluster_common::mnist;
use silt::cluster::npy::{self, NpyFile};
use std::process::Command;

fn silt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_silt"))
}

#[test]
fn cluster_npy_features_then_score_them() {
    let (x, y) = mnist(3000);
    let dir = tempfile::tempdir().unwrap();
    let feats = dir.path().join("mnist.npy");
    npy::write(&feats, &[3000, 784], &x).unwrap();
    let out = dir.path().join("out");
    let o = silt()
        .args(["cluster", "--features"])
        .arg(&feats)
        .args(["--k", "10", "--pca", "32", "--backend", "torch", "--device", "cpu", "--nredo", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let labels = NpyFile::open(&out.join("labels.npy")).unwrap().to_i64().unwrap();
    assert_eq!(labels.len(), 3000);
    assert_eq!(NpyFile::open(&out.join("centroids.npy")).unwrap().shape, vec![10, 32]);
    assert_eq!(NpyFile::open(&out.join("ids.npy")).unwrap().len(), 3000);
    assert!(out.join("pca.safetensors").exists());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["clusters"], 10);

    // Score against the digits, true labels as a text file.
    let truth = dir.path().join("truth.txt");
    std::fs::write(&truth, y.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let o = silt().args(["cluster", "metrics", "--json", "--labels"]).arg(&truth).arg("--pred").arg(out.join("labels.npy")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nmi = m["nmi"].as_f64().unwrap();
    println!("silt cluster on MNIST 3k (PCA-32 whitened + L2, k 10): NMI {nmi:.4}, ACC {:.4}", m["accuracy"]);
    assert!(nmi > 0.3 && nmi < 0.9, "{nmi}");
    assert_eq!(m["n"], 3000);

    // Hierarchical run reusing the fitted PCA.
    let out2 = dir.path().join("out2");
    let o = silt()
        .args(["cluster", "--features"])
        .arg(&feats)
        .args(["--levels", "3,4", "--backend", "faiss", "--pca-load"])
        .arg(out.join("pca.safetensors"))
        .arg("--out")
        .arg(&out2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l0 = NpyFile::open(&out2.join("level0_labels.npy")).unwrap().to_i64().unwrap();
    let l1 = NpyFile::open(&out2.join("level1_labels.npy")).unwrap().to_i64().unwrap();
    assert!(l0.iter().zip(&l1).all(|(a, b)| b / 4 == *a));

    // --refine: the final labels are refined, the level files keep the hierarchy
    let out3 = dir.path().join("refined");
    let o = silt()
        .args(["cluster", "--features"])
        .arg(&feats)
        .args(["--levels", "3,4", "--refine", "2", "--backend", "faiss", "--pca-load"])
        .arg(out.join("pca.safetensors"))
        .arg("--out")
        .arg(&out3)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out3.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["refine"], 2);
    assert_eq!(NpyFile::open(&out3.join("level1_labels.npy")).unwrap().to_i64().unwrap(), l1);
    let refined = NpyFile::open(&out3.join("labels.npy")).unwrap().to_i64().unwrap();
    assert_eq!(refined.len(), l1.len());
    assert!(refined.iter().all(|l| (0..12).contains(l)));
}

#[test]
fn help_shows_defaults_and_bad_input_is_a_clear_error() {
    let o = silt().args(["cluster", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for want in ["--features", "--levels", "[default: 256]", "[default: 10000]", "[default: 20]", "metrics"] {
        assert!(help.contains(want), "--help lacks {want}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.silt");
    std::fs::write(&bad, b"not a snapshot").unwrap();
    let o = silt().args(["cluster", "--k", "2", "--features"]).arg(&bad).arg("--out").arg(dir.path().join("o")).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.silt") && err.contains("corrupt"), "{err}");
}
