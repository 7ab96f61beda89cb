//! k-means: the tch implementation (CPU here; CUDA when lent) against faiss on real MNIST
//! features, and MNIST k-means quality against the labels.

mod cluster_common;

use cluster_common::mnist;
use silt::cluster::kmeans::{kmeans, Backend, EmptyClusterPolicy, Init, KMeansConfig};
use silt::cluster::metrics;
use silt::cluster::pca::{Pca, PcaConfig};

/// MNIST pixels → PCA-50 (no whitening, no L2: plain Euclidean geometry of the digits).
fn mnist_pca(n: usize, dim: usize) -> (Vec<f32>, Vec<i64>) {
    let (x, y) = mnist(n);
    let cfg = PcaConfig { dim, whitening_power: 0.0, l2_normalize: false, ..PcaConfig::default() };
    let pca = Pca::fit(&x, 784, &cfg).unwrap();
    (pca.transform(&x).unwrap(), y)
}

fn compare(x: &[f32], d: usize, cfg: &KMeansConfig) -> (f64, f64, f64) {
    let f = kmeans(x, d, cfg, Backend::Faiss).unwrap();
    let t = kmeans(x, d, cfg, Backend::Torch).unwrap();
    let ratio = t.inertia / f.inertia;
    let nmi = metrics::nmi(&f.labels, &t.labels).unwrap();
    // The reported inertia is the sum of the returned distances.
    let s: f64 = t.distances.iter().map(|&v| v as f64).sum();
    assert!((s - t.inertia).abs() <= 1e-6 * s);
    // One objective per iteration on both sides, falling as Lloyd's iterations do.
    for r in [&f, &t] {
        assert_eq!(r.objective.len(), cfg.niter);
        assert!(r.objective[cfg.niter - 1] < r.objective[0], "objective did not fall: {:?}", r.objective);
    }
    (ratio, nmi, f.inertia)
}

#[test]
fn torch_kmeans_matches_faiss_on_mnist_pca() {
    // With Init::Random both backends start from the same points (faiss' mt19937 permutation),
    // so the comparison tests the Lloyd iterations themselves: assignments agree almost exactly.
    let (x, _) = mnist_pca(20_000, 50);
    let mut results = Vec::new();
    for (k, nredo, mpc) in [(10, 1, 100_000), (100, 2, 100_000), (200, 1, 39)] {
        let cfg = KMeansConfig { k, niter: 20, nredo, seed: 7, max_points_per_centroid: mpc, ..KMeansConfig::default() };
        let (ratio, nmi, fi) = compare(&x, 50, &cfg);
        if nredo == 1 {
            // Same start and the same Lloyd steps: the two objective curves coincide.
            let f = kmeans(&x, 50, &cfg, Backend::Faiss).unwrap().objective;
            let t = kmeans(&x, 50, &cfg, Backend::Torch).unwrap().objective;
            for (i, (a, b)) in f.iter().zip(&t).enumerate() {
                assert!((a - b).abs() <= 1e-3 * a, "k={k} iteration {i}: faiss {a} vs tch {b}");
            }
        }
        println!("same start, k={k} nredo={nredo} max_pts/centroid={mpc}: inertia tch/faiss = {ratio:.6} (faiss {fi:.1}), NMI(tch, faiss) = {nmi:.4}");
        results.push((k, ratio, nmi));
    }
    for (k, ratio, nmi) in results {
        assert!((ratio - 1.0).abs() <= 0.01, "k={k}: inertia ratio {ratio}");
        assert!(nmi >= 0.9, "k={k}: NMI {nmi}");
    }
}

#[test]
fn plus_plus_and_keep_previous_reach_faiss_inertia() {
    // Different starts: k-means on MNIST has several minima of nearly equal inertia (NMI between
    // them ≈ 0.75–0.85), so only the objective is compared here.
    let (x, _) = mnist_pca(20_000, 50);
    let cfg = KMeansConfig { k: 50, niter: 25, nredo: 2, seed: 7, max_points_per_centroid: 100_000, init: Init::PlusPlus, empty: EmptyClusterPolicy::KeepPrevious, ..KMeansConfig::default() };
    let (ratio, nmi, _) = compare(&x, 50, &cfg);
    println!("k-means++ / keep-previous, k=50: inertia tch/faiss = {ratio:.5}, NMI = {nmi:.4}");
    assert!((ratio - 1.0).abs() <= 0.01, "inertia ratio {ratio}");
}

#[test]
fn kmeans_on_mnist_pixels_reaches_the_published_nmi() {
    // Published k-means on raw MNIST: NMI ≈ 0.50, ACC ≈ 0.53–0.57 (methods.md §3.3 baselines).
    let (x, y) = mnist(20_000);
    let cfg = KMeansConfig { k: 10, niter: 30, nredo: 3, seed: 1, max_points_per_centroid: 100_000, ..KMeansConfig::default() };
    for backend in [Backend::Faiss, Backend::Torch] {
        let r = kmeans(&x, 784, &cfg, backend).unwrap();
        let rep = metrics::report(&y, &r.labels).unwrap();
        println!("{backend:?} k-means on MNIST pixels (20k): NMI {:.4} ACC {:.4} ARI {:.4}", rep.nmi, rep.accuracy, rep.ari);
        assert!((0.45..0.6).contains(&rep.nmi), "{backend:?} NMI {}", rep.nmi);
        assert!((0.45..0.7).contains(&rep.accuracy), "{backend:?} ACC {}", rep.accuracy);
    }
}

#[test]
fn spherical_and_subsampled_training_work() {
    let (x, _) = mnist_pca(5000, 32);
    // Subsampling: 20 clusters × 50 points = 1000 training rows out of 5000; all rows labelled.
    let cfg = KMeansConfig { k: 20, niter: 10, max_points_per_centroid: 50, spherical: true, ..KMeansConfig::default() };
    for backend in [Backend::Faiss, Backend::Torch] {
        let r = kmeans(&x, 32, &cfg, backend).unwrap();
        assert_eq!(r.labels.len(), 5000);
        assert!(r.labels.iter().all(|&l| (0..20).contains(&l)));
        for c in r.centroids.chunks(32) {
            let norm: f32 = c.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "{backend:?}: centroid norm {norm}");
        }
    }
}

#[test]
fn empty_clusters_are_reseeded_by_splitting() {
    // 3 distinct points, each repeated 10 times, and k = 5: duplicate starting centroids tie,
    // so clusters go empty and must be re-seeded by faiss' split rule, in both backends.
    let pts = [[0.0f32, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let x: Vec<f32> = (0..30).flat_map(|i| pts[i % 3]).collect();
    let cfg = KMeansConfig { k: 5, niter: 10, seed: 5, empty: EmptyClusterPolicy::FaissSplit, ..KMeansConfig::default() };
    let t = kmeans(&x, 2, &cfg, Backend::Torch).unwrap();
    let f = kmeans(&x, 2, &cfg, Backend::Faiss).unwrap();
    println!("splits: tch {}, faiss {}; inertia tch {:e}, faiss {:e}", t.splits, f.splits, t.inertia, f.inertia);
    assert!(t.splits > 0, "the torch backend never split");
    assert!(t.inertia < 1e-3 && f.inertia < 1e-3, "{} {}", t.inertia, f.inertia);
    // Every point sits with its own duplicates.
    for i in 0..30 {
        assert_eq!(pts[i % 3], pts[(i + 3) % 30 % 3]);
        let same: Vec<i64> = (0..30).filter(|j| j % 3 == i % 3).map(|j| t.labels[j]).collect();
        let other: Vec<i64> = (0..30).filter(|j| j % 3 != i % 3).map(|j| t.labels[j]).collect();
        assert!(same.iter().all(|l| !other.contains(l)), "point {i} shares a cluster with another point");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let x = vec![0f32; 10];
    assert!(kmeans(&x, 3, &KMeansConfig::default(), Backend::Torch).is_err()); // 10 % 3 != 0
    let cfg = KMeansConfig { k: 6, ..KMeansConfig::default() };
    assert!(kmeans(&x, 2, &cfg, Backend::Faiss).is_err()); // k > n
    let nan = vec![f32::NAN; 8];
    assert!(kmeans(&nan, 2, &KMeansConfig { k: 2, ..KMeansConfig::default() }, Backend::Torch).is_err());
}

#[test]
fn gpu_kmeans_matches_faiss() {
    if !tch::Cuda::is_available() {
        println!("skipped: no CUDA device visible to libtorch (GPU k-means needs one)");
        return;
    }
    let (x, _) = mnist_pca(20_000, 50);
    let cfg = KMeansConfig { k: 100, niter: 25, nredo: 3, seed: 7, max_points_per_centroid: 100_000, device: tch::Device::Cuda(0), ..KMeansConfig::default() };
    let (ratio, nmi, _) = compare(&x, 50, &cfg);
    println!("GPU: inertia tch/faiss = {ratio:.5}, NMI = {nmi:.4}");
    assert!((ratio - 1.0).abs() <= 0.01 && nmi >= 0.9);
}

#[test]
fn shared_assignment_rows_are_whole_blocks_covering_every_row_once() {
    use silt::cluster::kmeans::shared_rows;
    for (n, chunk, world) in [(3000, 1024, 2), (10, 4, 3), (5, 16, 4), (100_000, 16_384, 7), (0, 8, 2)] {
        let mut next = 0;
        for rank in 0..world {
            let (start, end) = shared_rows(n, chunk, rank, world);
            assert_eq!(start, next, "n {n} chunk {chunk} world {world}: rank {rank} starts at {start}");
            assert!(start % chunk == 0 || start == n, "rank {rank} starts mid-block at {start}");
            assert!(end >= start);
            next = end;
        }
        assert_eq!(next, n);
    }
}
