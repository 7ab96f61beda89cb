//! PIC (src/method/pic.rs):
//!
//! 1. its loss, logits and gradients (features and W), two SGD steps on W and the MLP head
//!    against a PyTorch transcription of bl0/PIC (tests/py/method_pic.py) on the same tensors;
//! 2. negative sampling: the lazy closed-form catch-up of W's untouched rows equals stepping every
//!    row every step (torch.optim.SGD on the whole matrix, with ∇ = 0 for the rows left out);
//! 3. the sliding-window scheduler (each sample in window/stride consecutive windows) and the
//!    rescaled epoch count;
//! 4. short runs on Fashion-MNIST: instance classification far above chance, loss well below
//!    ln N, the trunk's kNN accuracy against the random network's — above it by a clear margin
//!    when W's rows start from the untrained network's features (`--bank-init features`).

mod train_common;

use silt::loader::{Sampler, SamplerKind};
use silt::method::contrastive::{HeadKind, Projection};
use silt::method::pic::{pic_loss, sampled_classes, window_epochs};
use silt::train::checkpoint::named_vars;
use silt::train::optim::{LazyRowSgd, Sgd, SgdConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};
use train_common::{metrics, short_run, ShortRun};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

#[test]
fn loss_gradients_and_sgd_step_match_pytorch() {
    let Some(py) = train_common::python() else {
        panic!("the Python venv with torch is missing: run ops/setup (ops/test does)");
    };
    tch::set_num_threads(1);
    tch::manual_seed(5);
    let (b, d, n, n_small) = (6i64, 8i64, 20i64, 2usize);
    let (temp, lr0, lr1, momentum, wd) = (0.2, 0.5, 0.3, 0.9, 1e-2);
    let mut out: Vec<(String, Tensor)> = Vec::new();
    let mut put = |name: &str, t: &Tensor| out.push((name.to_string(), t.detach().copy()));

    let w0 = Tensor::randn([n, d], CPU);
    let y = Tensor::from_slice(&[3i64, 17, 0, 9, 12, 19]);
    let f_large = Tensor::randn([b, d], CPU).set_requires_grad(true);
    let f_small: Vec<Tensor> = (0..n_small).map(|_| Tensor::randn([b, d], CPU).set_requires_grad(true)).collect();
    let w = w0.copy().set_requires_grad(true);
    let (loss, logits) = pic_loss(std::slice::from_ref(&f_large), &f_small, &w, &y, temp);
    loss.backward();
    assert_eq!(logits.size(), vec![3 * b, n]);
    put("W", &w0);
    put("y", &y);
    put("f_large", &f_large);
    for (i, f) in f_small.iter().enumerate() {
        put(&format!("f_small{i}"), f);
        put(&format!("grad_f_small{i}"), &f.grad());
    }
    put("logits", &logits);
    put("loss", &loss);
    put("grad_f_large", &f_large.grad());
    put("grad_W", &w.grad());
    put("n_small", &Tensor::from_slice(&[n_small as i64]));
    put("hyper", &Tensor::from_slice(&[temp, lr0, lr1, momentum, wd]));

    // Two steps of the trainer's SGD on W (as a parameter of PIC's head optimiser).
    let w = w0.copy().set_requires_grad(true);
    let mut opt = Sgd::new(vec![("W".to_string(), w.shallow_clone())], SgdConfig::new(momentum, wd, false));
    let fl = f_large.detach();
    let fs: Vec<Tensor> = f_small.iter().map(|f| f.detach()).collect();
    for (s, lr) in [lr0, lr1].into_iter().enumerate() {
        opt.zero_grad();
        pic_loss(std::slice::from_ref(&fl), &fs, &w, &y, temp).0.backward();
        opt.step(lr);
        put(&format!("W_step{}", s + 1), &w);
    }

    // The same two steps through the lazy row optimiser with every row in the softmax (nothing
    // to catch up): the sampled path reduces to the released code's.
    let wl = w0.copy();
    let mut lazy = LazyRowSgd::new(n, d, momentum, wd, Device::Cpu);
    let all: Vec<i64> = (0..n).collect();
    for lr in [lr0, lr1] {
        lazy.catch_up(&wl, &all);
        let sub = wl.index_select(0, &Tensor::from_slice(&all)).set_requires_grad(true);
        pic_loss(std::slice::from_ref(&fl), &fs, &sub, &y, temp).0.backward();
        lazy.step(&wl, &all, &sub.grad(), lr);
    }
    let lazy_diff = (&wl - &w).abs().max().double_value(&[]);
    assert!(lazy_diff < 1e-6, "lazy optimiser over all rows vs SGD: {lazy_diff}");

    // The MLP head (in → hidden → dim).
    let vs = nn::VarStore::new(Device::Cpu);
    let head = Projection::new(&(vs.root() / "head"), HeadKind::WideMlp { hidden: 32 }, 12, 6);
    for (name, t) in named_vars(&vs, "head.init.") {
        put(&name, &t);
    }
    let x = Tensor::randn([10, 12], CPU);
    put("head.x", &x);
    put("head.y", &head.forward_t(&x, true));

    let dir = tempfile::tempdir().unwrap();
    Tensor::write_safetensors(&out, dir.path().join("pic.safetensors")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/method_pic.py");
    let res = Command::new(&py).arg(script).arg(dir.path()).output().unwrap();
    let report = String::from_utf8_lossy(&res.stdout);
    eprintln!("silt vs PyTorch (largest absolute differences):\n{report}");
    assert!(res.status.success(), "silt and the PyTorch reference differ:\n{report}\n{}", String::from_utf8_lossy(&res.stderr));
}

/// Negative sampling: 40 steps, each a softmax over the batch's rows plus the recent FIFO, with a
/// per-iteration learning rate. Lazily (rows caught up in closed form when touched, then
/// everything at the end) and eagerly (PyTorch's SGD over the whole W every step, untouched rows
/// with ∇ = 0) give the same W and momentum.
#[test]
fn lazy_catch_up_equals_stepping_every_row() {
    tch::manual_seed(9);
    let (n, d, b, k, steps) = (50i64, 6i64, 5usize, 12usize, 40usize);
    let (momentum, wd, temp) = (0.9, 0.05, 0.2);
    let w0 = Tensor::randn([n, d], CPU) * 0.5;
    let eager = w0.copy().set_requires_grad(true);
    let mut opt = Sgd::new(vec![("W".to_string(), eager.shallow_clone())], SgdConfig::new(momentum, wd, false));
    let lazy_w = w0.copy();
    let mut lazy = LazyRowSgd::new(n, d, momentum, wd, Device::Cpu);
    let mut recent = vec![-1i64; k];
    let mut ptr = 0;
    let mut order: Vec<i64> = Vec::new();
    for s in 0..steps {
        if order.len() < b {
            let perm = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
            order.extend(Vec::<i64>::try_from(&perm).unwrap());
        }
        let batch: Vec<i64> = order.drain(..b).collect();
        let (classes, pos) = sampled_classes(&batch, &recent);
        assert!(classes.len() <= b + k);
        let f = Tensor::randn([b as i64, d], CPU);
        let t = Tensor::from_slice(&pos);
        let lr = 0.05 + 0.45 * (1.0 + (std::f64::consts::PI * s as f64 / steps as f64).cos()) / 2.0;
        let idx = Tensor::from_slice(&classes);

        opt.zero_grad();
        pic_loss(std::slice::from_ref(&f), &[], &eager.index_select(0, &idx), &t, temp).0.backward();
        opt.step(lr);

        lazy.catch_up(&lazy_w, &classes);
        let sub = lazy_w.index_select(0, &idx).set_requires_grad(true);
        pic_loss(std::slice::from_ref(&f), &[], &sub, &t, temp).0.backward();
        lazy.step(&lazy_w, &classes, &sub.grad(), lr);

        for &r in &batch {
            recent[ptr] = r;
            ptr = (ptr + 1) % k;
        }
    }
    let stale = (&lazy_w - &eager).abs().max().double_value(&[]);
    lazy.catch_up_all(&lazy_w);
    let diff = (&lazy_w - &eager).abs().max().double_value(&[]);
    let eager_buf = opt.state("").into_iter().next().unwrap().1;
    let buf_diff = (&lazy.buffer - &eager_buf).abs().max().double_value(&[]);
    let moved = (&eager - &w0).abs().max().double_value(&[]);
    eprintln!("lazy vs eager after {steps} steps: W {diff:.2e}, momentum {buf_diff:.2e} (before the final catch-up {stale:.2e}; W moved {moved:.3})");
    assert!(stale > 1e-3, "some rows must be behind before the final catch-up, or the test shows nothing");
    assert!(diff < 1e-5 && buf_diff < 1e-5, "lazy catch-up differs from eager stepping: W {diff}, momentum {buf_diff}");
}

#[test]
fn sampled_classes_dedups_and_targets_point_at_own_rows() {
    let (classes, pos) = sampled_classes(&[4, 7, 1], &[7, -1, 9, 4, 2, 9]);
    assert_eq!(classes, vec![4, 7, 1, 9, 2]);
    assert_eq!(pos, vec![0, 1, 2]);
}

/// One pass over a permutation (windows 0..=6 of 1000 samples, D 400, S 100): every sample
/// appears in one run of consecutive windows, D/S = 4 long for the 400 chain positions that the
/// first and last windows do not cut off; every window has D distinct samples.
#[test]
fn sliding_window_each_sample_in_window_over_stride_consecutive_windows() {
    let (n, window, stride) = (1000u64, 400u64, 100u64);
    let s = Sampler::new(SamplerKind::SlidingWindow { window, stride }, n, 11, 0, 1).unwrap();
    let mut seen: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for e in 0..=6 {
        let w = s.epoch_indices(e);
        assert_eq!(w.len(), window as usize);
        let distinct: std::collections::BTreeSet<u64> = w.iter().copied().collect();
        assert_eq!(distinct.len(), w.len(), "window {e} repeats a sample");
        for i in w {
            seen.entry(i).or_default().push(e);
        }
    }
    assert_eq!(seen.len() as u64, n, "one pass visits every sample");
    let mut full = 0;
    for (i, es) in &seen {
        assert!(es.windows(2).all(|p| p[1] == p[0] + 1), "sample {i} in non-consecutive windows {es:?}");
        assert!(es.len() as u64 <= window / stride);
        full += (es.len() as u64 == window / stride) as usize;
    }
    assert_eq!(full, 400, "chain positions 300..700 are in exactly 4 windows");
    // Later passes: still D/S windows per visit. Windows 10..=16 lie inside the second
    // permutation (chain positions 1000..2000).
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in 7..=19 {
        for i in s.epoch_indices(e) {
            *counts.entry(i).or_default() += 1;
        }
    }
    // Windows 7..=19 cover chain positions 700..2300: positions 1000..2000 (the whole second
    // permutation) four times each, so every sample at least 4.
    assert!(counts.values().all(|&c| c >= 4), "{:?}", counts.values().min());
}

#[test]
fn sliding_window_rescales_epochs() {
    // main_pretrain.py: ceil(epochs · N / D). ImageNet: 200 epochs, N 1281167, D 131072 → 1955.
    assert_eq!(window_epochs(200.0, 1_281_167, 131_072), 1955.0);
    assert_eq!(window_epochs(5.0, 2000, 500), 20.0);
    assert_eq!(window_epochs(0.0, 2000, 500), 0.0);
    // A window larger than the data is one epoch.
    assert_eq!(window_epochs(3.0, 1000, 131_072), 3.0);
}

// ---------------------------------------------------------------------------------------------
// Short real-data runs.

const TRAIN_IMAGES: usize = 2000;
const TEST_IMAGES: usize = 500;

struct Run {
    knn: Vec<f64>,
    steps: Vec<(f64, f64)>,
    windows: usize,
    seconds: f64,
}

fn run_pic(extra: &[&str]) -> Run {
    run_pic_on(TRAIN_IMAGES, TEST_IMAGES, extra)
}

fn run_pic_on(train_images: usize, test_images: usize, extra: &[&str]) -> Run {
    let ShortRun { run, knn, seconds, .. } = &short_run("pic", train_images, test_images, extra);
    let (knn, seconds) = (knn.clone(), *seconds);
    let steps: Vec<(f64, f64)> = metrics(run, "step").iter().map(|v| (v["loss"].as_f64().unwrap(), v["accuracy"].as_f64().unwrap())).collect();
    let windows = metrics(run, "epoch").len();
    assert!(steps.iter().all(|s| s.0.is_finite()));
    eprintln!(
        "pic {extra:?}: {seconds:.0} s, {windows} epochs, loss {:.3} -> {:.3}; kNN top-1 random init {:.3}, after each epoch {:?}",
        steps[0].0,
        steps[steps.len() - 1].0,
        knn[0],
        &knn[1..]
    );
    Run { knn, steps, windows, seconds }
}

/// Mean loss and accuracy of the last `n` steps.
fn tail_mean(steps: &[(f64, f64)], n: usize) -> (f64, f64) {
    let tail = &steps[steps.len() - n..];
    let k = tail.len() as f64;
    (tail.iter().map(|s| s.0).sum::<f64>() / k, tail.iter().map(|s| s.1).sum::<f64>() / k)
}

/// What a short CPU run shows (measured; the test prints its figures). Settings: the small CNN,
/// batch 32, constant lr 0.03, τ 0.2, mild crops (scale 0.8–1), the sliding window with D 256,
/// S 64 (each image in 4 consecutive windows) for 3 epochs = 24 windows (chain positions
/// 0..1728: most of the first pass), the full softmax over N = 2000.
/// Within the first pass over the data the network learns the instance task, but only so far:
/// the loss falls well below ln N (windows 4-23: 6.68 against 7.60, i.e. the own row gets
/// ~2.5/N of the probability on average), while the own row is the top-1 of 2000 only about
/// 1-4 times as often as chance (1/N; 3-6 hits in 5120 samples, too few to assert on). The
/// trunk's kNN accuracy dips below the random network's (0.622 on these
/// shards; 0.50–0.60 after 16-24 windows) and climbs back with more windows (0.61 after 60) without
/// passing it: what is asserted is the instance task and no collapse (kNN far above chance 0.1).
/// Longer runs (60 windows, or 20 epochs without the window) show the loss rising above ln N
/// again once the window enters the second permutation: the rows of images last seen a pass
/// earlier no longer match the trunk's features — PIC's infrequent-visit problem at N/B = 60
/// steps per pass, which the paper's remedy (the sliding window) does not cure at this scale.
#[test]
fn short_run_loss_falls_well_below_chance() {
    let extra = [
        "--epochs", "3", "--batch-size", "32", "--lr", "0.03", "--schedule", "constant", "--min-scale", "0.8", "--use-sliding-window-sampler", "--window-size", "256", "--window-stride", "64",
    ];
    let r = run_pic(&extra);
    assert_eq!(r.windows, 24, "3 epochs of 2000 with windows of 256: ceil(3 x 2000 / 256) = 24 windows");
    assert_eq!(r.steps.len(), 24 * 8, "8 batches of 32 per window");
    let n = TRAIN_IMAGES as f64;
    // Skip the first 4 windows (no image seen before).
    let (loss, acc) = tail_mean(&r.steps, 20 * 8);
    eprintln!(
        "pic: windows 4-23: loss {loss:.3} (ln N = {:.3}), own-instance top-1 {acc:.4} (chance 1/N = {:.4}); kNN top-1 {:.3} vs random init {:.3}; {:.0} s",
        n.ln(),
        1.0 / n,
        r.knn[r.knn.len() - 1],
        r.knn[0],
        r.seconds
    );
    assert!(loss < n.ln() - 0.5, "loss {loss} not well below ln N");
    assert!(r.knn.iter().all(|&a| a > 0.45), "kNN collapsed: {:?}", r.knn);
}

/// With W's rows started from the untrained network's normalised features (`--bank-init
/// features`), the first pass already pulls each image towards a row that describes it instead of
/// noise, and the trunk's kNN accuracy climbs above the random network's within a few epochs
/// (benches/methods_compare.sh's data and settings: 5,000 images, batch 128, constant lr 0.03,
/// MLP head 512). On 2,000 images 5 epochs (75 steps) end only +0.02 above it.
#[test]
fn feature_initialised_classifier_beats_random_init() {
    let extra = ["--epochs", "8", "--batch-size", "128", "--lr", "0.03", "--schedule", "constant", "--mlp-hidden", "512", "--min-scale", "0.3", "--bank-init", "features"];
    let r = run_pic_on(5000, 1000, &extra);
    let (random, last) = (r.knn[0], r.knn[r.knn.len() - 1]);
    eprintln!("pic --bank-init features, 8 epochs: kNN top-1 {last:.3} vs random init {random:.3} ({:+.3})", last - random);
    assert!(last > random + 0.02, "kNN {last} vs random {random}");
}
