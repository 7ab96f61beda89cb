//! Data-parallel training as separate processes on 127.0.0.1 (c10d/Gloo), on real Fashion-MNIST:
//! - 2 ranks with batch B and SyncBatchNorm end with the same weights as 1 rank with batch 2B;
//! - so do 4 ranks with batch B/2 (RotNet, and DeepCluster, whose clustering runs on features
//!   the ranks extract in shares and all-gather);
//! - killing one rank (SIGKILL) ends the other with a clear error within seconds, and restarting
//!   both resumes from rank 0's last checkpoint and ends with the weights of an uninterrupted run.

mod dist_common;
mod train_common;

use dist_common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use train_common::fashion_shards;

const COMMON: &[&str] = &["--arch", "small", "--crop", "28", "--min-scale", "0.3", "--workers", "1", "--threads", "1", "--seed", "5", "--log-every", "1", "--k", "10", "--dim-pca", "16"];

fn args(data: &Path, run: &Path, method: &str, batch: usize, more: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["train".into(), data.display().to_string(), "--method".into(), method.into(), "--batch-size".into(), batch.to_string(), "--run-dir".into(), run.display().to_string()];
    v.extend(COMMON.iter().chain(more).map(|s| s.to_string()));
    v
}

fn run_ranks(world: usize, a: &[String], logs: &Path) {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut ranks = spawn(world, free_port(), &refs, logs, &[]);
    for (r, (ok, err)) in wait_all(&mut ranks, Duration::from_secs(600)).into_iter().enumerate() {
        assert!(ok, "rank {r} of {world} failed:\n{err}");
    }
}

/// The trunk's tensors (and InstDisc's memory bank, PIC's classifier) of a run's last checkpoint.
fn trunk(run: &Path) -> Vec<(String, tch::Tensor)> {
    let ck = silt::train::checkpoint::load(run).unwrap();
    let mut v: Vec<(String, tch::Tensor)> = ck.tensors.into_iter().filter(|(k, _)| k.starts_with("trunk.") || k == "method.memory" || k == "method.W").collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Largest |a − b| over all tensors, relative to the largest |a| — at least 0.05: biases in front
/// of a BatchNorm stay near their initial 0 (their gradient is zero up to rounding), and rounding
/// noise relative to ~0 says nothing.
fn max_rel_diff(a: &[(String, tch::Tensor)], b: &[(String, tch::Tensor)]) -> f64 {
    assert_eq!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
    let mut worst = 0f64;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let x = x.to_kind(tch::Kind::Double);
        let y = y.to_kind(tch::Kind::Double);
        let scale = x.abs().max().double_value(&[]).max(0.05);
        let d = (&x - &y).abs().max().double_value(&[]) / scale;
        if d > worst {
            eprintln!("{name}: relative difference {d:.2e}");
        }
        worst = worst.max(d);
    }
    worst
}

fn data(dir: &Path, n: usize) -> PathBuf {
    fashion_shards(&dir.join("data"), "train", n)
}

fn same_weights_as_one_big_batch(method: &str, world: usize, per_rank: usize, tolerance: f64, more: &[&str]) {
    same_weights_on(512, method, world, per_rank, tolerance, more)
}

fn same_weights_on(records: usize, method: &str, world: usize, per_rank: usize, tolerance: f64, more: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), records);
    let one = dir.path().join("one");
    let many = dir.path().join("many");
    run_ranks(1, &args(&d, &one, method, per_rank * world, more), &dir.path().join("logs1"));
    let mut m: Vec<&str> = more.to_vec();
    m.push("--sync-bn");
    run_ranks(world, &args(&d, &many, method, per_rank, &m), &dir.path().join("logsN"));
    let diff = max_rel_diff(&trunk(&one), &trunk(&many));
    assert!(diff < tolerance, "{method}: {world} ranks x batch {per_rank} vs 1 rank x batch {}: weights differ by {diff:.2e}", per_rank * world);
    // rank 0 alone logs; the steps are the global steps
    let steps_one = train_common::metrics(&one, "step").len();
    let steps_many = train_common::metrics(&many, "step").len();
    assert_eq!(steps_one, steps_many);
    // clustering methods: the same pseudo-labels, epoch by epoch
    let sizes = |run: &Path| train_common::metrics(run, "cluster").iter().map(|c| c["sizes"].to_string()).collect::<Vec<_>>();
    assert_eq!(sizes(&one), sizes(&many));
    let labels = |run: &Path| std::fs::read_to_string(run.join("pseudo_labels.tsv")).ok();
    assert_eq!(labels(&one), labels(&many));
    let run = &train_common::metrics(&many, "run")[0];
    assert_eq!(run["world"], world);
}

#[test]
fn two_ranks_train_like_one_rank_with_twice_the_batch() {
    same_weights_as_one_big_batch("rotnet", 2, 32, 2e-3, &["--epochs", "1", "--max-steps", "6"]);
}

#[test]
fn four_ranks_train_like_one_rank_with_four_times_the_batch() {
    same_weights_as_one_big_batch("rotnet", 4, 16, 2e-3, &["--epochs", "1", "--max-steps", "6"]);
}

#[test]
fn deepcluster_clusters_shared_features_on_two_ranks() {
    // Epoch 2 trains on labels from k-means over features the two ranks extracted in halves: the
    // labels must be identical to the single process's. Two epochs of SyncBN's float rounding
    // (sum of squares vs PyTorch's kernel) leave differences of a few 1e-3 in the weights.
    same_weights_as_one_big_batch("deepcluster", 2, 32, 2e-2, &["--epochs", "2"]);
}

#[test]
fn deepcluster_shares_flat_kmeans_over_two_ranks() {
    // --kmeans-backend torch: each rank assigns its blocks of rows every k-means iteration
    // (3,000 records in blocks of 1,024: rank 0 one block, rank 1 two) and the labels are
    // all-gathered; both epochs' pseudo-labels must equal the single process's.
    same_weights_on(3000, "deepcluster", 2, 32, 2e-2, &["--epochs", "2", "--max-steps", "8", "--kmeans-backend", "torch"]);
}

#[test]
fn deepercluster_shares_its_sub_clusterings_over_two_ranks() {
    // SyncBN always on; the 2 super-clusters (8 super-classes with rotation) are sub-clustered one
    // per rank, and the labels must equal the single process's. Half an epoch: at DeeperCluster's
    // rate 0.1 training is chaotic enough that one process run with 1 and then 2 torch threads
    // ends its first epoch 1e-1 apart (measured); after 8 steps the drift is still ~5e-3.
    same_weights_as_one_big_batch("deepercluster", 2, 16, 1e-2, &["--epochs", "1", "--max-steps", "8", "--super-classes", "8", "--reassignment", "1"]);
}

#[test]
fn killing_one_rank_stops_the_other_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 768);
    let more = ["--epochs", "2", "--checkpoint-every", "3"];
    let whole = dir.path().join("whole");
    run_ranks(2, &args(&d, &whole, "rotnet", 32, &more), &dir.path().join("logs-whole"));

    let run = dir.path().join("killed");
    let a = args(&d, &run, "rotnet", 32, &more);
    let (ok, err, noticed) = kill_rank_1_after_first_checkpoint(&a, &run, &dir.path().join("logs-killed"));
    assert!(!ok, "rank 0 must fail when rank 1 dies");
    assert!(noticed < Duration::from_secs(30), "rank 0 took {noticed:?} to notice");
    assert!(err.contains("rank 0/2") && err.contains("failed"), "unclear error:\n{err}");

    // both ranks again: resume from rank 0's last checkpoint and finish
    run_ranks(2, &a, &dir.path().join("logs-resumed"));
    let resumed_log = std::fs::read_to_string(dir.path().join("logs-resumed/rank-1.err")).unwrap();
    assert!(resumed_log.contains("resuming rotnet"), "rank 1 did not resume:\n{resumed_log}");
    let diff = max_rel_diff(&trunk(&whole), &trunk(&run));
    assert!(diff < 1e-5, "resumed run differs from the uninterrupted one by {diff:.2e}");
}

#[test]
fn a_rank_dying_inside_sync_batchnorm_is_a_clear_error() {
    // DeeperCluster always synchronises BatchNorm: the survivor meets the dead rank inside a
    // layer's all-gather, which cannot return an error itself; the trainer must still end with
    // the collective's error (rank, operation), not a panic.
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 768);
    let run = dir.path().join("run");
    let a = args(&d, &run, "deepercluster", 32, &["--epochs", "2", "--super-classes", "8", "--reassignment", "1", "--checkpoint-every", "3"]);
    let (ok, err, noticed) = kill_rank_1_after_first_checkpoint(&a, &run, &dir.path().join("logs"));
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    println!("rank 0 after {noticed:?}: {last}");
    assert!(!ok, "rank 0 must fail when rank 1 dies");
    assert!(!err.contains("panicked"), "a panic instead of an error:\n{err}");
    assert!(err.contains("rank 0/2") && err.contains("failed"), "unclear error:\n{err}");
}

#[test]
fn simclr_negatives_span_the_global_batch() {
    // The projections are gathered with gradient: 2 x 32 sees the same 64-image batch as 1 x 64.
    // NT-Xent's gradient cancels heavily, so a small rate: with SimCLR's 0.075 even one process
    // run with 1 and then 2 torch threads drifts apart by 1e-2 within a few steps (measured).
    same_weights_as_one_big_batch("simclr", 2, 32, 2e-3, &["--epochs", "1", "--max-steps", "3", "--lr", "0.001"]);
}

#[test]
fn instdisc_banks_receive_every_ranks_rows() {
    // Full softmax over the bank (no noise draws): the 2 steps of epoch 2 read rows both ranks
    // wrote in epoch 1 (8 steps); the bank is compared too (a bank missing the other rank's rows
    // would differ by O(1)). The softmax at τ 0.07 amplifies rounding: the gradients of one step
    // already differ by ~1e-3, the weights after 10 steps by ~8e-3 (measured).
    same_weights_as_one_big_batch("instdisc", 2, 32, 1.5e-2, &["--epochs", "2", "--max-steps", "10", "--nce-k", "0"]);
}

#[test]
fn pic_sampled_negatives_span_every_ranks_batch() {
    // --negatives 64: each step softmaxes over both ranks' 32 + 32 records and the 64 most recent
    // ones, as one process with the 64-image batch does; W (its lazily stepped rows included) and
    // the trunk end alike. Every rank reads every shard (cache-mode full), as the one process does.
    same_weights_as_one_big_batch("pic", 2, 32, 1e-2, &["--epochs", "1", "--max-steps", "8", "--negatives", "64", "--cache-mode", "full"]);
}

#[test]
fn moco_queue_takes_every_ranks_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 512);
    let run = dir.path().join("run");
    run_ranks(2, &args(&d, &run, "moco-v2", 32, &["--epochs", "1", "--max-steps", "5", "--moco-k", "1024"]), &dir.path().join("logs"));
    let ck = silt::train::checkpoint::load(&run).unwrap();
    // 5 steps x 2 ranks x 32 keys
    assert_eq!(ck.meta.method_state["queue_ptr"], 320);
    assert_eq!(ck.meta.world, 2);
}

#[test]
fn cache_mode_part_gives_each_rank_its_own_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = train_common::fashion_shards_sized(&dir.path().join("data"), "train", &[300, 212]);
    let epoch_images = |mode: &str| {
        let run = dir.path().join(format!("run-{mode}"));
        run_ranks(2, &args(&d, &run, "rotnet", 32, &["--epochs", "1", "--cache-mode", mode]), &dir.path().join(format!("logs-{mode}")));
        let e = &train_common::metrics(&run, "epoch")[0];
        (e["images"].as_u64().unwrap(), train_common::metrics(&run, "step").len())
    };
    // part: rank 0 reads shard 0 (300 records); the ranks step together for the shorter share
    // (212 records = 7 batches of 32)
    assert_eq!(epoch_images("part"), (300, 7));
    // full: a global shuffle dealt over both ranks, 256 each = 8 batches
    assert_eq!(epoch_images("full"), (256, 8));
}

#[test]
fn a_two_rank_checkpoint_resumes_on_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let d = data(dir.path(), 512);
    let run = dir.path().join("run");
    // 3 steps of 2 x 32 samples, then stop mid-epoch with a checkpoint
    run_ranks(2, &args(&d, &run, "rotnet", 32, &["--epochs", "1", "--max-steps", "3"]), &dir.path().join("logs2"));
    // one process finishes the epoch: the 512 - 192 unread samples, re-dealt, in 10 batches of 32
    let a = args(&d, &run, "rotnet", 32, &["--epochs", "1"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt")).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("re-dealing its unread samples"), "{err}");
    let steps: Vec<u64> = train_common::metrics(&run, "step").iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=13).collect::<Vec<_>>());
    let ck = silt::train::checkpoint::load(&run).unwrap();
    assert_eq!((ck.meta.epoch, ck.meta.world), (1, 1));
}

/// Starts 2 ranks on `a`, SIGKILLs rank 1 once `run` holds a checkpoint, and returns rank 0's
/// (success, stderr) and how long after the kill it ended.
fn kill_rank_1_after_first_checkpoint(a: &[String], run: &Path, logs: &Path) -> (bool, String, Duration) {
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut ranks = spawn(2, free_port(), &refs, logs, &[("SILT_DIST_TIMEOUT_S", "20".into())]);
    let started = Instant::now();
    while !run.join("checkpoints/LATEST").exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    ranks[1].child.kill().unwrap();
    let killed_at = Instant::now();
    let mut results = wait_all(&mut ranks[..1], Duration::from_secs(60));
    let noticed = killed_at.elapsed();
    let _ = ranks[1].child.wait();
    let (ok, err) = results.remove(0);
    (ok, err, noticed)
}
