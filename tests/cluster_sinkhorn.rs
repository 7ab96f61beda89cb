//! SeLa Sinkhorn-Knopp (log space, tch) against SeLa's own linear-space float64 algorithm
//! written in numpy, on the same logits.

mod cluster_common;

use cluster_common::python_json;
use silt::cluster::rng::SplitMix64;
use silt::cluster::sinkhorn::{sela_labels, sela_labels_heads, SinkhornConfig};
use tch::Tensor;

/// SeLa `cpu_sk` (sinkhornknopp.py), float64, without its final normalisation of P.
const ORACLE: &str = r#"
import json, sys
import numpy as np
a = json.load(sys.stdin)
out = []
for head in a["heads"]:
    x = np.asarray(head, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    P = np.exp(x); P /= P.sum(axis=1, keepdims=True)
    PS = (P.T) ** a["lambda"]                    # K x N
    K, N = PS.shape
    r = np.ones((K, 1)) / K; c = np.ones((N, 1)) / N
    err, counter = 1e6, 0
    while err > a["tol"]:
        r = (1.0 / K) / (PS @ c)
        c_new = (1.0 / N) / (r.T @ PS).T
        if counter % 10 == 0:
            err = np.nansum(np.abs(c / c_new - 1))
        c = c_new
        counter += 1
    Q = PS * c.T * r
    out.append(dict(labels=np.argmax(Q, 0).tolist(), log_r=np.log(r[:, 0]).tolist(),
                    log_c=np.log(c[:, 0]).tolist(), iterations=counter))
print(json.dumps(out))
"#;

fn random_logits(n: usize, k: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = SplitMix64::new(seed);
    // Points prefer cluster (i mod k/2), so the unconstrained argmax would use only half the
    // clusters: equipartition has real work to do.
    (0..n)
        .map(|i| (0..k).map(|j| rng.next_f64() * 2.0 + if j == i % (k / 2) { 2.0 } else { 0.0 }).collect())
        .collect()
}

#[test]
fn log_space_sinkhorn_matches_sela_reference() {
    let (n, k) = (600usize, 12usize);
    let heads: Vec<Vec<Vec<f64>>> = (0..3).map(|h| random_logits(n, k, 10 + h)).collect();
    let cfg = SinkhornConfig { lambda: 10.0, tol: 1e-3, max_iters: 100_000 };
    let want = python_json(ORACLE, &serde_json::json!({"heads": heads, "lambda": cfg.lambda, "tol": cfg.tol}));
    let tensors: Vec<Tensor> = heads
        .iter()
        .map(|h| Tensor::from_slice(&h.concat()).view([n as i64, k as i64]))
        .collect();
    let results = sela_labels_heads(&tensors, &cfg).unwrap();
    for (h, r) in results.iter().enumerate() {
        let w = &want[h];
        let wl: Vec<i64> = w["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(r.iterations as u64, w["iterations"].as_u64().unwrap(), "head {h}: iterations");
        assert_eq!(r.labels, wl, "head {h}: labels differ");
        let lc: Vec<f64> = Vec::try_from(&r.log_c).unwrap();
        let lr: Vec<f64> = Vec::try_from(&r.log_r).unwrap();
        let max_c = lc.iter().zip(w["log_c"].as_array().unwrap()).map(|(a, b)| (a - b.as_f64().unwrap()).abs()).fold(0.0, f64::max);
        let max_r = lr.iter().zip(w["log_r"].as_array().unwrap()).map(|(a, b)| (a - b.as_f64().unwrap()).abs()).fold(0.0, f64::max);
        println!("head {h}: {} iterations, max |Δlog c| = {max_c:e}, max |Δlog r| = {max_r:e}", r.iterations);
        assert!(max_c < 1e-9 && max_r < 1e-9, "head {h}: {max_c} {max_r}");
        // Equipartition: the hard labels use every cluster, near N/K each.
        let mut sizes = vec![0usize; k];
        for &l in &r.labels {
            sizes[l as usize] += 1;
        }
        assert!(sizes.iter().all(|&s| s >= n / k / 2), "head {h}: sizes {sizes:?}");
    }
}

#[test]
fn large_lambda_does_not_underflow_in_log_space() {
    // λ = 25 with confident logits: P^λ underflows to 0 in linear space; log space is fine.
    let (n, k) = (400usize, 8usize);
    let logits: Vec<f64> = random_logits(n, k, 3).concat().iter().map(|v| v * 20.0).collect();
    let t = Tensor::from_slice(&logits).view([n as i64, k as i64]);
    let r = sela_labels(&t, &SinkhornConfig::default()).unwrap();
    assert!(r.error <= 0.1 && r.error.is_finite());
    assert_eq!(r.labels.len(), n);
    let used: std::collections::BTreeSet<i64> = r.labels.iter().copied().collect();
    assert_eq!(used.len(), k, "all clusters used");
}

#[test]
fn sinkhorn_on_gpu_matches_cpu() {
    if !tch::Cuda::is_available() {
        println!("skipped: no CUDA device visible to libtorch");
        return;
    }
    let (n, k) = (1000usize, 16usize);
    let t = Tensor::from_slice(&random_logits(n, k, 9).concat()).view([n as i64, k as i64]);
    let cfg = SinkhornConfig { lambda: 10.0, tol: 1e-3, max_iters: 100_000 };
    let cpu = sela_labels(&t, &cfg).unwrap();
    let gpu = sela_labels(&t.to_device(tch::Device::Cuda(0)), &cfg).unwrap();
    assert_eq!(cpu.labels, gpu.labels);
}
