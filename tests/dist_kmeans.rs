//! k-means shared out over 2 and 4 processes (`silt cluster` under a launcher: each rank assigns
//! its share of the points, centroid sums are all-reduced) gives the clustering of the
//! single-process torch backend on the same features and seed: the same labels (up to the odd
//! point on a boundary, from the different summation order) and the same inertia.

mod dist_common;
mod train_common;

use dist_common::*;
use std::path::Path;
use std::time::Duration;

/// Real features: Fashion-MNIST test images average-pooled to 7x7 (49 dims).
fn features(path: &Path, n: usize) {
    let mut x = Vec::with_capacity(n * 49);
    for (px, _) in train_common::fashion("t10k", n) {
        for by in 0..7 {
            for bx in 0..7 {
                let s: u32 = (0..4).flat_map(|y| (0..4).map(move |xx| (y, xx))).map(|(y, xx)| px[(by * 4 + y) * 28 + bx * 4 + xx] as u32).sum();
                x.push(s as f32 / (16.0 * 255.0));
            }
        }
    }
    silt::cluster::npy::write(path, &[n, 49], &x).unwrap();
}

fn cluster_args(feats: &Path, out: &Path) -> Vec<String> {
    ["cluster", "--features", &feats.display().to_string(), "--k", "20", "--niter", "15", "--seed", "11", "--pca", "0", "--backend", "torch", "--device", "cpu", "--out", &out.display().to_string()].iter().map(|s| s.to_string()).collect()
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn distributed_kmeans_equals_single_process_kmeans() {
    let dir = tempfile::tempdir().unwrap();
    let feats = dir.path().join("features.npy");
    features(&feats, 3000);
    let single = dir.path().join("single");
    let a = cluster_args(&feats, &single);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt")).args(&a).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = silt::cluster::assign::read_labels(&single.join("labels.npy")).unwrap();
    let want_inertia = report(&single)["inertia"].as_f64().unwrap();

    for world in [2, 4] {
        let out_dir = dir.path().join(format!("ranks{world}"));
        let a = cluster_args(&feats, &out_dir);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut ranks = spawn(world, free_port(), &refs, &dir.path().join(format!("logs{world}")), &[]);
        for (r, (ok, err)) in wait_all(&mut ranks, Duration::from_secs(300)).into_iter().enumerate() {
            assert!(ok, "rank {r} of {world}: {err}");
        }
        let rep = report(&out_dir);
        assert_eq!(rep["backend"], "torch-distributed");
        assert_eq!(rep["ranks"], world);
        let got = silt::cluster::assign::read_labels(&out_dir.join("labels.npy")).unwrap();
        assert_eq!(got.len(), want.len());
        let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        eprintln!("{world} ranks: {differ} of {} labels differ from the single process", want.len());
        assert!(differ <= 3, "{world} ranks: {differ} of {} labels differ", want.len());
        let inertia = rep["inertia"].as_f64().unwrap();
        assert!((inertia - want_inertia).abs() <= 1e-4 * want_inertia, "{world} ranks: inertia {inertia} vs {want_inertia}");
    }
}

#[test]
fn shared_hierarchical_kmeans_equals_single_process() {
    // DeeperCluster's two levels: the 4 super-classes' sub-clusterings are shared out over the
    // ranks; each keeps its seed, so the labels are exactly the single process's
    let dir = tempfile::tempdir().unwrap();
    let feats = dir.path().join("features.npy");
    features(&feats, 2000);
    let with_levels = |out: &Path| {
        let mut a: Vec<String> = cluster_args(&feats, out).into_iter().map(|s| if s == "torch" { "faiss".into() } else { s }).collect();
        a.extend(["--levels", "4,5"].iter().map(|s| s.to_string()));
        a
    };
    let single = dir.path().join("single");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt")).args(with_levels(&single)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shared = dir.path().join("shared");
    let a = with_levels(&shared);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut ranks = spawn(3, free_port(), &refs, &dir.path().join("logs"), &[]);
    for (r, (ok, err)) in wait_all(&mut ranks, Duration::from_secs(300)).into_iter().enumerate() {
        assert!(ok, "rank {r}: {err}");
    }
    for f in ["labels.npy", "level0_labels.npy", "level1_labels.npy"] {
        assert_eq!(silt::cluster::assign::read_labels(&single.join(f)).unwrap(), silt::cluster::assign::read_labels(&shared.join(f)).unwrap(), "{f}");
    }
    assert_eq!(std::fs::read(single.join("centroids.npy")).unwrap(), std::fs::read(shared.join("centroids.npy")).unwrap());
}
