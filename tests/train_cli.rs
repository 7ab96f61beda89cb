//! The training verbs through the binary on real labelled data: a short RotNet run with
//! evaluation, its report PNGs, `silt eval knn`, `silt export`, and `--pretrained` loading the
//! exported trunk back (its pre-training evaluation equals the exported run's last one).

mod train_common;

use std::path::Path;
use std::process::Command;
use train_common::{fashion_shards, metrics};

fn silt(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_silt")).args(args).output().unwrap();
    assert!(out.status.success(), "silt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn rotnet_run_report_eval_export_and_pretrained() {
    let tmp = tempfile::tempdir().unwrap();
    let train = fashion_shards(&tmp.path().join("train"), "train", 800);
    let test = fashion_shards(&tmp.path().join("test"), "t10k", 400);
    let run = tmp.path().join("rotnet");
    let common = ["--arch", "small", "--crop", "28", "--batch-size", "64", "--workers", "2", "--seed", "5", "--log-every", "2"];
    let mut args = vec!["train", p(&train), "--method", "rotnet", "--epochs", "2", "--lr", "0.05", "--eval-data", p(&test), "--run-dir", p(&run), "--json"];
    args.extend(common);
    let summary: serde_json::Value = serde_json::from_str(&silt(&args)).unwrap();
    assert_eq!(summary["epochs_done"], 2);
    assert_eq!(summary["steps"], 26, "2 epochs of 800 samples in batches of 64");

    // Metrics: the random network (epoch -1) and both epochs evaluated; losses finite.
    let evals = metrics(&run, "eval");
    let epochs: Vec<i64> = evals.iter().map(|v| v["epoch"].as_i64().unwrap()).collect();
    assert_eq!(epochs, vec![-1, 0, 1]);
    let steps = metrics(&run, "step");
    assert!(steps.iter().all(|v| v["loss"].as_f64().unwrap().is_finite()));
    let first = steps.first().unwrap()["loss"].as_f64().unwrap();
    let last = steps.last().unwrap()["loss"].as_f64().unwrap();
    eprintln!("rotnet loss {first:.3} -> {last:.3}; kNN {:?}", evals.iter().map(|v| v["knn_top1"].as_f64().unwrap()).collect::<Vec<_>>());
    assert!(first > 1.2 && last < first, "4-way rotation loss starts near ln 4 and falls: {first} -> {last}");

    // Report PNGs.
    let report = silt(&["report", p(&run)]);
    for f in ["loss.png", "lr.png", "knn.png", "accuracy.png"] {
        assert!(run.join("report").join(f).exists(), "{f} missing:\n{report}");
    }

    // silt eval knn on the checkpoint equals the run's own last evaluation.
    let knn: serde_json::Value = serde_json::from_str(&silt(&["eval", "knn", "--checkpoint", p(&run), "--train", p(&train), "--test", p(&test), "--workers", "2", "--json"])).unwrap();
    let last_eval = evals.last().unwrap()["knn_top1"].as_f64().unwrap();
    assert!((knn["top1"].as_f64().unwrap() - last_eval).abs() < 1e-9, "eval knn {} vs the run's {last_eval}", knn["top1"]);

    // Export, then start a new run from the exported trunk: its epoch -1 evaluation is the
    // exported network's.
    let exported = tmp.path().join("trunk.safetensors");
    silt(&["export", p(&run), "--out", p(&exported)]);
    let run2 = tmp.path().join("from-pretrained");
    let mut args = vec!["train", p(&train), "--method", "rotnet", "--epochs", "1", "--max-steps", "1", "--pretrained", p(&exported), "--eval-data", p(&test), "--run-dir", p(&run2)];
    args.extend(common);
    silt(&args);
    let start = metrics(&run2, "eval")[0]["knn_top1"].as_f64().unwrap();
    assert!((start - last_eval).abs() < 1e-9, "pretrained start {start} vs exported {last_eval}");
}
