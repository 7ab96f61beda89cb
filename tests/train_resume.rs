//! Crash safety of training: a run (DeepCluster, DeeperCluster, MoCo v2, SimCLR with LARS,
//! InstDisc, SeLa, PIC) killed with SIGKILL mid-epoch and resumed reads the same batches, logs
//! the same losses and ends with the same weights (and, for the contrastive methods, SeLa and
//! PIC, the same key encoder, queue, memory bank, heads, SeLa's labels and PIC's classifier with
//! its lazy per-row state) as a run that was never interrupted.

mod train_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use train_common::{fashion_shards, metrics};

fn train_cmd(data: &Path, run: &Path, method: &str, more: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_silt"));
    c.args(["train"]).arg(data).args(["--method", method, "--arch", "small", "--crop", "28", "--min-scale", "0.3", "--epochs", "2", "--batch-size", "64", "--k", "10", "--dim-pca", "32", "--log-every", "1", "--checkpoint-every", "2", "--workers", "2", "--threads", "1", "--seed", "7", "--super-classes", "8", "--reassignment", "1"]);
    // The contrastive methods with small queues / noise draws, MoCo with shuffle BN, SimCLR
    // through LARS (its backward pass runs inside the method).
    let extra: &[&str] = match method {
        "moco" | "moco-v2" => &["--moco-k", "256", "--bn-splits", "2"],
        "simclr" => &["--lars", "--temperature", "0.5"],
        "instdisc" => &["--nce-k", "64"],
        // Two heads of 10 clusters; nopts 8 puts relabellings at steps 0, 1, 2, 4, 7, 11 and 15,
        // i.e. before and after both kills and in both epochs.
        "sela" => &["--hc", "2", "--ncl", "10", "--nopts", "8"],
        // PIC: a small head; the sliding window (320 of 640, stride 160: 2 epochs become 4
        // windows of 5 steps) and multi-crop, or the negative sampling's lazy state.
        "pic" => &["--mlp-hidden", "64", "--use-sliding-window-sampler", "--window-size", "320", "--window-stride", "160"],
        _ => &[],
    };
    c.args(extra).args(more);
    c.arg("--run-dir").arg(run).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Methods whose own state (key encoder, queue, memory bank, heads) is compared too.
const COMPARE_METHOD_STATE: &[&str] = &["moco", "moco-v2", "simclr", "instdisc", "sela", "pic"];

fn run_to_end(data: &Path, run: &Path, method: &str, more: &[&str]) {
    let out = train_cmd(data, run, method, more).output().unwrap();
    assert!(out.status.success(), "silt train failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Steps logged: (step, loss, batch hash), each step exactly once.
fn steps(run: &Path) -> Vec<(u64, f64, String)> {
    metrics(run, "step").iter().map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap(), v["batch_hash"].as_str().unwrap().to_string())).collect()
}

fn final_weights(run: &Path, method: &str) -> Vec<(String, tch::Tensor)> {
    let ck = silt::train::checkpoint::load(run).unwrap();
    let method_state = COMPARE_METHOD_STATE.contains(&method);
    let mut v: Vec<(String, tch::Tensor)> = ck.tensors.into_iter().filter(|(k, _)| k.starts_with("trunk.") || (method_state && k.starts_with("method."))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn kill_and_resume(method: &str) {
    kill_and_resume_with(method, &[]);
}

fn kill_and_resume_with(method: &str, more: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = fashion_shards(&tmp.path().join("data"), "train", 640);
    let clean = tmp.path().join("clean");
    run_to_end(&data, &clean, method, more);
    let reference = steps(&clean);
    assert_eq!(reference.len(), 20, "2 epochs of 640 samples in batches of 64");

    // Kill twice: once right after a mid-epoch checkpoint, once at a later moment of epoch 2.
    let crashed = tmp.path().join("crashed");
    for kill_after_step in [5u64, 14] {
        let mut child = train_cmd(&data, &crashed, method, more).spawn().unwrap();
        let t0 = Instant::now();
        loop {
            let done = steps(&crashed).iter().map(|s| s.0).max().unwrap_or(0);
            if done >= kill_after_step || t0.elapsed() > Duration::from_secs(600) {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                panic!("training ended before it could be killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("{method}: killed after step {}", steps(&crashed).iter().map(|s| s.0).max().unwrap_or(0));
    }
    run_to_end(&data, &crashed, method, more);
    let resumed = steps(&crashed);
    assert_eq!(resumed.len(), reference.len(), "every step logged once after resumption");
    let mut worst = 0f64;
    for (a, b) in reference.iter().zip(&resumed) {
        assert_eq!(a.0, b.0, "step numbers");
        assert_eq!(a.2, b.2, "step {}: the resumed run read a different batch", a.0);
        worst = worst.max((a.1 - b.1).abs());
    }
    eprintln!("{method}: largest loss difference over {} steps: {worst:e}", reference.len());
    assert!(worst < 1e-4, "loss curves differ by {worst}");
    let (wa, wb) = (final_weights(&clean, method), final_weights(&crashed, method));
    assert_eq!(wa.len(), wb.len());
    let mut wmax = 0f64;
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        wmax = wmax.max((ta - tb).abs().max().double_value(&[]));
    }
    eprintln!("{method}: largest final weight difference: {wmax:e}");
    assert!(wmax < 1e-4, "final weights differ by {wmax}");
    if clean.join("pseudo_labels.tsv").exists() {
        let (la, lb) = (std::fs::read_to_string(clean.join("pseudo_labels.tsv")).unwrap(), std::fs::read_to_string(crashed.join("pseudo_labels.tsv")).unwrap());
        assert_eq!(la, lb, "pseudo-labels after resumption");
    }
}

#[test]
fn deepcluster_resumes_exactly_after_sigkill() {
    kill_and_resume("deepcluster");
}

#[test]
fn deepercluster_resumes_exactly_after_sigkill() {
    kill_and_resume("deepercluster");
}

#[test]
fn moco_resumes_exactly_after_sigkill() {
    kill_and_resume("moco-v2");
}

#[test]
fn simclr_resumes_exactly_after_sigkill() {
    kill_and_resume("simclr");
}

#[test]
fn instdisc_resumes_exactly_after_sigkill() {
    kill_and_resume("instdisc");
}

#[test]
fn sela_resumes_exactly_after_sigkill() {
    kill_and_resume("sela");
}

#[test]
fn pic_multicrop_sliding_window_resumes_exactly_after_sigkill() {
    kill_and_resume_with("pic", &["--aug", "multicrop", "--crop2", "0.5"]);
}

#[test]
fn pic_negative_sampling_resumes_exactly_after_sigkill() {
    kill_and_resume_with("pic", &["--negatives", "100"]);
}
