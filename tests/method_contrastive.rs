//! InstDisc, MoCo v1/v2 and SimCLR (src/method/contrastive.rs, moco.rs, simclr.rs, instdisc.rs):
//!
//! 1. their losses (InfoNCE with a queue, NT-Xent, InstDisc's NCE and full softmax), gradients,
//!    projection heads and state updates (momentum encoder, queue, memory bank, LARS) against a
//!    PyTorch transcription of the upstream code (tests/py/method_contrastive.py) on the same
//!    tensors;
//! 2. a short run of each method on Fashion-MNIST whose kNN accuracy is compared with the randomly
//!    initialised network's (the run's epoch -1 evaluation).

mod train_common;

use silt::method::contrastive::{
    bank_softmax, ema_update, info_nce, l2_normalize, nce_loss, nce_probs, nt_xent, sample_noise, HeadKind, MemoryBank, Projection, Queue,
};
use silt::train::checkpoint::named_vars;
use silt::train::optim::{Sgd, SgdConfig};
use std::path::Path;
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};
use train_common::metrics;

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

fn leaf(t: Tensor) -> Tensor {
    t.set_requires_grad(true)
}

fn grad_of(t: &Tensor) -> Tensor {
    t.grad().detach().copy()
}

fn scalar(v: f64) -> Tensor {
    Tensor::from_slice(&[v])
}

#[test]
fn losses_heads_and_updates_match_pytorch() {
    let Some(py) = train_common::python() else {
        panic!("the Python venv with torch is missing: run ops/setup (ops/test does)");
    };
    tch::set_num_threads(1);
    tch::manual_seed(11);
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let mut put = |name: &str, t: &Tensor| out.push((name.to_string(), t.detach().copy()));
    let (n, d) = (8i64, 16i64);

    // MoCo InfoNCE with a queue of 32 keys.
    let q_raw = leaf(Tensor::randn([n, d], CPU));
    let k_raw = Tensor::randn([n, d], CPU);
    let queue = Queue::new(d, 32, Device::Cpu);
    let (q, k) = (l2_normalize(&q_raw), l2_normalize(&k_raw));
    let (loss, logits) = info_nce(&q, &k, &queue.keys, 0.07);
    loss.backward();
    for (name, t) in [("moco.q_raw", &q_raw), ("moco.k_raw", &k_raw), ("moco.queue", &queue.keys), ("moco.logits", &logits)] {
        put(name, t);
    }
    put("moco.loss", &loss);
    put("moco.grad_q", &grad_of(&q_raw));
    let col_norms = queue.keys.norm_scalaropt_dim(2, [0i64], false);
    assert!((col_norms - 1.0).abs().max().double_value(&[]) < 1e-5, "queue columns start L2-normalised");

    // SimCLR NT-Xent, two temperatures.
    for (tag, t) in [("a", 0.1), ("b", 0.5)] {
        let z1 = leaf(Tensor::randn([n, d], CPU));
        let z2 = leaf(Tensor::randn([n, d], CPU));
        let (loss, _) = nt_xent(&z1, &z2, t);
        loss.backward();
        put(&format!("ntxent_{tag}.z1"), &z1);
        put(&format!("ntxent_{tag}.z2"), &z2);
        put(&format!("ntxent_{tag}.t"), &scalar(t));
        put(&format!("ntxent_{tag}.loss"), &loss);
        put(&format!("ntxent_{tag}.grad_z1"), &grad_of(&z1));
        put(&format!("ntxent_{tag}.grad_z2"), &grad_of(&z2));
    }

    // InstDisc: bank of 100, NCE with K = 20 (Z from this batch, then reused), full softmax.
    let n_data = 100i64;
    let mut bank = MemoryBank::new(n_data, d, 0.5, Device::Cpu);
    let y = Tensor::from_slice(&[3i64, 17, 42, 0, 99, 56, 23, 71]);
    let idx = sample_noise(&y, 20, n_data);
    assert_eq!(idx.select(1, 0), y, "slot 0 holds the sample's own index");
    let mut f_raw = leaf(Tensor::randn([n, d], CPU));
    let f = l2_normalize(&f_raw);
    let (probs, z) = nce_probs(&f, &bank.gather(&idx), 0.07, None, n_data);
    let loss = nce_loss(&probs, n_data);
    loss.backward();
    put("nce.bank", &bank.bank);
    put("nce.idx", &idx);
    put("nce.y", &y);
    put("nce.f_raw", &f_raw);
    put("nce.probs", &probs);
    put("nce.z", &scalar(z));
    put("nce.loss", &loss);
    put("nce.grad_f", &grad_of(&f_raw));
    let f2_raw = leaf(Tensor::randn([n, d], CPU));
    let (probs2, z2) = nce_probs(&l2_normalize(&f2_raw), &bank.gather(&idx), 0.07, Some(z), n_data);
    assert_eq!(z2, z, "Z is fixed after the first batch");
    let loss2 = nce_loss(&probs2, n_data);
    put("nce.f2_raw", &f2_raw);
    put("nce.loss2", &loss2);
    f_raw.zero_grad();
    let f = l2_normalize(&f_raw);
    let (sloss, _) = bank_softmax(&f, &bank.bank, &y, 0.1);
    sloss.backward();
    put("softmax.loss", &sloss);
    put("softmax.grad_f", &grad_of(&f_raw));
    bank.update(&y, &f.detach());
    put("bank.after", &bank.bank);

    // Momentum encoder: two parameter tensors, m = 0.99.
    let kp = [Tensor::randn([5, 4], CPU), Tensor::randn([7], CPU)];
    let qp = [Tensor::randn([5, 4], CPU), Tensor::randn([7], CPU)];
    for i in 0..2 {
        put(&format!("ema.k{i}"), &kp[i]);
        put(&format!("ema.q{i}"), &qp[i]);
    }
    let pairs: Vec<(Tensor, Tensor)> = kp.iter().zip(&qp).map(|(k, q)| (k.shallow_clone(), q.shallow_clone())).collect();
    ema_update(&pairs, 0.99);
    for (i, k) in kp.iter().enumerate() {
        put(&format!("ema.k{i}_after"), k);
    }

    // Queue: five batches of 8 into 32 (MoCo's case, wraps once), then batches of 12 (wrap inside
    // a batch) and of 40 (> K).
    let mut qq = Queue::new(d, 32, Device::Cpu);
    put("queue.init", &qq.keys);
    for s in 0..5 {
        let keys = l2_normalize(&Tensor::randn([8, d], CPU));
        put(&format!("queue.keys{s}"), &keys);
        qq.enqueue(&keys);
    }
    put("queue.after", &qq.keys);
    put("queue.ptr", &Tensor::from_slice(&[qq.ptr]));
    for (s, b) in [12i64, 12, 40].into_iter().enumerate() {
        let keys = Tensor::randn([b, d], CPU);
        put(&format!("queue.wrap_keys{s}"), &keys);
        qq.enqueue(&keys);
    }
    put("queue.wrap_after", &qq.keys);
    put("queue.wrap_ptr", &Tensor::from_slice(&[qq.ptr]));

    // Heads: MoCo v2's MLP and SimCLR's BN MLP, one train-mode forward each.
    for (tag, kind) in [("mlp", HeadKind::Mlp), ("simclr", HeadKind::SimclrMlp), ("linear", HeadKind::Linear)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = Projection::new(&(vs.root() / "head"), kind, 12, 6);
        for (name, t) in named_vars(&vs, &format!("{tag}.init.")) {
            put(&name, &t);
        }
        let x = Tensor::randn([10, 12], CPU);
        let y = head.forward_t(&x, true);
        put(&format!("{tag}.x"), &x);
        put(&format!("{tag}.y"), &y);
        for (name, t) in named_vars(&vs, &format!("{tag}.after.")) {
            put(&name, &t);
        }
    }

    // LARS: a weight matrix and a bias, three steps of fixed gradients, constant lr, through
    // the trainer's SGD with LARS (momentum 0.9).
    let (lr, momentum, wd, eta) = (0.5, 0.9, 1e-3, 0.02);
    let w = leaf(Tensor::randn([6, 5], CPU));
    let b = leaf(Tensor::randn([6], CPU));
    put("lars.w0", &w);
    put("lars.b0", &b);
    let mut opt = Sgd::new(vec![("w".to_string(), w.shallow_clone()), ("b".to_string(), b.shallow_clone())], SgdConfig::new(momentum, wd, false).with_lars(eta));
    for s in 0..3 {
        let (gw, gb) = (Tensor::randn([6, 5], CPU), Tensor::randn([6], CPU));
        put(&format!("lars.gw{s}"), &gw);
        put(&format!("lars.gb{s}"), &gb);
        opt.zero_grad();
        ((&w * &gw).sum(Kind::Float) + (&b * &gb).sum(Kind::Float)).backward();
        opt.step(lr);
    }
    put("lars.w3", &w);
    put("lars.b3", &b);
    put("lars.hyper", &Tensor::from_slice(&[lr, momentum, wd, eta]));

    let dir = tempfile::tempdir().unwrap();
    Tensor::write_safetensors(&out, dir.path().join("contrastive.safetensors")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/method_contrastive.py");
    let res = Command::new(&py).arg(script).arg(dir.path()).output().unwrap();
    let report = String::from_utf8_lossy(&res.stdout);
    eprintln!("silt vs PyTorch (largest absolute differences):\n{report}");
    assert!(res.status.success(), "silt and the PyTorch reference differ:\n{report}\n{}", String::from_utf8_lossy(&res.stderr));
}

// ---------------------------------------------------------------------------------------------
// Short real-data runs.

/// Trains `method` for a few epochs on Fashion-MNIST with the small CNN and returns the kNN top-1
/// of the random network and after each epoch, and the logged (loss, accuracy) of every step.
fn short_run(method: &str, extra: &[&str]) -> (Vec<f64>, Vec<(f64, f64)>) {
    run_on(method, TRAIN_IMAGES, TEST_IMAGES, extra)
}

fn run_on(method: &str, train_images: usize, test_images: usize, extra: &[&str]) -> (Vec<f64>, Vec<(f64, f64)>) {
    let r = train_common::short_run(method, train_images, test_images, extra);
    let (run, knn) = (&r.run, r.knn.clone());
    let steps: Vec<(f64, f64)> = metrics(run, "step").iter().map(|v| (v["loss"].as_f64().unwrap(), v["accuracy"].as_f64().unwrap())).collect();
    assert!(steps.iter().all(|s| s.0.is_finite()));
    eprintln!(
        "{method} {extra:?}: {:.0} s, loss {:.3} -> {:.3}; kNN top-1 random init {:.3}, after each epoch {:?}",
        r.seconds,
        steps[0].0,
        steps[steps.len() - 1].0,
        knn[0],
        &knn[1..]
    );
    (knn, steps)
}

const TRAIN_IMAGES: usize = 2000;
const TEST_IMAGES: usize = 500;

/// The mean loss and accuracy of the last epoch's steps (`per_epoch` steps each).
fn last_epoch_mean(steps: &[(f64, f64)], per_epoch: usize) -> (f64, f64) {
    let tail = &steps[steps.len() - per_epoch..];
    let n = tail.len() as f64;
    (tail.iter().map(|s| s.0).sum::<f64>() / n, tail.iter().map(|s| s.1).sum::<f64>() / n)
}

/// What these short CPU runs show (measured; each test prints its figures): every method learns its
/// pretext task far above chance within ~30 steps, but with upstream's defaults the trunk's kNN
/// accuracy first dips below the random network's (0.622 on these shards; after 2-3 epochs MoCo v2
/// 0.59, SimCLR with plain SGD 0.61) and climbs back over more steps — a PyTorch transcription of
/// the same SimCLR run does the same. So the pretext tests assert the pretext task and no collapse
/// (kNN far above chance 0.1); the `*_beats_random_init` tests assert the margin with the settings
/// that reach it in a short run: SimCLR with LARS (its upstream optimiser), InstDisc with the bank
/// started from the network's features, MoCo v2 over ten epochs.
const KNN_FLOOR: f64 = 0.45;

#[test]
fn moco_v2_short_run_learns_instance_discrimination() {
    let k = 1024;
    let (knn, steps) = short_run("moco-v2", &["--epochs", "2", "--batch-size", "125", "--moco-k", "1024", "--moco-m", "0.99", "--bn-splits", "2", "--lr", "0.06", "--min-scale", "0.3"]);
    let chance = ((k + 1) as f64).ln();
    let (loss, acc) = last_epoch_mean(&steps, 16);
    eprintln!("moco-v2: last epoch InfoNCE {loss:.3} (chance ln(1+K) = {chance:.3}), key found among 1+K: {acc:.3} (chance {:.4})", 1.0 / (k + 1) as f64);
    assert!(loss < chance - 0.5, "InfoNCE {loss} not well below chance {chance}");
    assert!(acc > 20.0 / (k + 1) as f64, "positive-key accuracy {acc}");
    assert!(knn.iter().all(|&a| a > KNN_FLOOR), "kNN {knn:?}");
}

#[test]
fn simclr_short_run_learns_instance_discrimination() {
    let b = 125;
    let (knn, steps) = short_run("simclr", &["--epochs", "2", "--batch-size", "125", "--temperature", "0.5", "--min-scale", "0.3"]);
    let chance = 2.0 * ((2 * b - 1) as f64).ln();
    let (loss, acc) = last_epoch_mean(&steps, 16);
    eprintln!("simclr: last epoch NT-Xent {loss:.3} (chance 2 ln(2B-1) = {chance:.3}), positive found among 2B-1: {acc:.3} (chance {:.4})", 1.0 / (2 * b - 1) as f64);
    assert!(loss < chance - 1.0, "NT-Xent {loss} not well below chance {chance}");
    assert!(acc > 10.0 / (2 * b - 1) as f64, "positive accuracy {acc}");
    assert!(knn.iter().all(|&a| a > KNN_FLOOR), "kNN {knn:?}");
}

/// The kNN top-1 after the last epoch beats the random network's by `margin`.
fn assert_beats_random(method: &str, knn: &[f64], margin: f64) {
    let (random, last) = (knn[0], knn[knn.len() - 1]);
    eprintln!("{method}: kNN top-1 {last:.3} vs random init {random:.3} ({:+.3})", last - random);
    assert!(last > random + margin, "{method}: kNN {last} vs random {random}");
}

/// InstDisc, full softmax over the bank (lemniscate's CIFAR setting). With the upstream random
/// bank the first pass pulls every image towards a random row and the features fall to chance
/// (loss ln N: 0.673 -> 0.559 after 15 epochs of 5,000 images); with the bank started from the
/// untrained network's features the positives are meaningful from the first step. The features
/// still dip in the first epoch and need ~150 steps to pass the random network's (on 2,000
/// images, 6 epochs, 96 steps: 0.592 vs 0.622), hence 5,000 images for 10 epochs here.
#[test]
fn instdisc_with_feature_initialised_bank_beats_random_init() {
    let n = 5000;
    let (knn, steps) = run_on("instdisc", n, 1000, &["--epochs", "10", "--batch-size", "125", "--nce-k", "0", "--temperature", "0.1", "--lr", "0.03", "--min-scale", "0.3", "--bank-init", "features"]);
    let chance = (n as f64).ln();
    let (loss, acc) = last_epoch_mean(&steps, n / 125);
    eprintln!("instdisc: last epoch softmax loss {loss:.3} (chance ln N = {chance:.3}), own index top-1 {acc:.3}");
    assert!(loss < chance - 0.5, "loss {loss} not below ln N {chance}");
    assert_beats_random("instdisc --bank-init features", &knn, 0.02);
}

/// SimCLR with LARS, as SimCLR trains (lr 1.0 x B/256, T 0.5 as its CIFAR runs).
#[test]
fn simclr_with_lars_beats_random_init() {
    let (knn, _) = short_run("simclr", &["--epochs", "3", "--batch-size", "125", "--temperature", "0.5", "--lars", "--lr", "1.0", "--min-scale", "0.3"]);
    assert_beats_random("simclr --lars", &knn, 0.02);
}

/// The margin over the random network: MoCo v2 (plain BN, K 4096, m 0.99) for 10 epochs of 4000
/// images (310 steps; ~50 s on a quiet 2-core machine: 0.705 vs 0.663).
#[test]
fn moco_v2_beats_random_init_in_ten_epochs() {
    let extra = ["--epochs", "10", "--batch-size", "128", "--moco-k", "4096", "--moco-m", "0.99", "--bn-splits", "1", "--lr", "0.06", "--min-scale", "0.3"];
    let (knn, _) = run_on("moco-v2", 4000, 1000, &extra);
    assert_beats_random("moco-v2, 10 epochs", &knn, 0.02);
}

