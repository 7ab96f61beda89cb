//! Hierarchical k-means (DeeperCluster's two levels) on real MNIST features: label structure,
//! agreement with flat k-means, and the written mmap arrays.

mod cluster_common;

use cluster_common::mnist;
use silt::cluster::assign;
use silt::cluster::hierarchical::{hierarchical_kmeans, hierarchical_kmeans_with};
use silt::cluster::kmeans::{kmeans, Backend, Init, KMeansConfig};
use silt::cluster::metrics;
use silt::cluster::npy::NpyFile;
use silt::cluster::pca::{Pca, PcaConfig};
use silt::cluster::refine::refine;

#[test]
fn two_levels_are_consistent_and_agree_with_flat() {
    let (x, y) = mnist(10_000);
    let pca = Pca::fit(&x, 784, &PcaConfig { dim: 50, whitening_power: 0.0, l2_normalize: false, ..PcaConfig::default() }).unwrap();
    let f = pca.transform(&x).unwrap();
    let d = 50;
    let cfg = KMeansConfig { niter: 20, seed: 3, max_points_per_centroid: 100_000, ..KMeansConfig::default() };
    let h = hierarchical_kmeans(&f, d, &[10, 10], &cfg, Backend::Faiss).unwrap();
    let flat = kmeans(&f, d, &KMeansConfig { k: 100, ..cfg.clone() }, Backend::Faiss).unwrap();
    // label = super × k2 + sub, and every label is in range.
    for (s, l) in h.labels[0].iter().zip(h.final_labels()) {
        assert_eq!(l / 10, *s);
        assert!((0..100).contains(l));
    }
    // Two flat runs that differ only by seed set the scale of agreement to expect at k = 100.
    let flat2 = kmeans(&f, d, &KMeansConfig { k: 100, seed: 99, ..cfg.clone() }, Backend::Faiss).unwrap();
    let baseline = metrics::nmi(&flat.labels, &flat2.labels).unwrap();
    let agree = metrics::nmi(&flat.labels, h.final_labels()).unwrap();
    let ratio = h.inertia / flat.inertia;
    let nmi_truth = metrics::nmi(&y, &h.labels[0]).unwrap();
    println!(
        "MNIST 10k PCA-50: NMI(flat100, 10x10) = {agree:.4} (flat vs flat, other seed: {baseline:.4}), \
         inertia hier/flat = {ratio:.4}, NMI(level-0, digits) = {nmi_truth:.4}"
    );
    assert!(agree > 0.85 * baseline, "{agree} vs {baseline}");
    assert!(ratio < 1.15, "{ratio}");
    assert!(nmi_truth > 0.4, "{nmi_truth}");

    // A few global Lloyd iterations let points leave their parent: lower inertia, closer to flat.
    let alive = vec![true; 100];
    let r = refine(&f, d, &h.centroids[1], &alive, 3, Backend::Faiss, &cfg).unwrap();
    let agree_refined = metrics::nmi(&flat.labels, &r.labels).unwrap();
    println!("  + 3 global iterations: NMI to flat {agree_refined:.4}, inertia / flat {:.4}", r.inertia / flat.inertia);
    assert!(r.inertia < h.inertia, "{} vs {}", r.inertia, h.inertia);
    assert!(agree_refined > agree, "{agree_refined} vs {agree}");

    // Written as mmap-able arrays, read back unchanged.
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<u64> = (0..10_000u64).collect();
    assign::write_flat(dir.path(), &ids, h.final_labels(), &h.centroids[1], d).unwrap();
    for (l, (labels, cents)) in h.labels.iter().zip(&h.centroids).enumerate() {
        assign::write_level(dir.path(), l, labels, cents, d).unwrap();
    }
    assert_eq!(assign::read_labels(&dir.path().join("labels.npy")).unwrap(), h.final_labels());
    assert_eq!(assign::read_labels(&dir.path().join("level0_labels.npy")).unwrap(), h.labels[0]);
    let c = NpyFile::open(&dir.path().join("level1_centroids.npy")).unwrap();
    assert_eq!(c.shape, vec![100, 50]);
    assert_eq!(c.to_f32().unwrap(), h.centroids[1]);
}

#[test]
fn small_parents_get_fewer_children() {
    // 3 far-apart groups of 4, 2 and 30 points; levels [3, 5]: the group of 2 can only have 2.
    let mut x = Vec::new();
    for (g, count) in [(0, 4), (1, 2), (2, 30)] {
        for i in 0..count {
            x.extend_from_slice(&[g as f32 * 100.0 + i as f32 * 0.1, (i % 5) as f32 * 0.1]);
        }
    }
    let cfg = KMeansConfig { niter: 10, nredo: 5, ..KMeansConfig::default() };
    let h = hierarchical_kmeans(&x, 2, &[3, 5], &cfg, Backend::Torch).unwrap();
    let used: std::collections::BTreeSet<i64> = h.final_labels().iter().copied().collect();
    assert_eq!(used.len(), 4 + 2 + 5);
    assert!(hierarchical_kmeans(&x, 2, &[3, 0], &cfg, Backend::Torch).is_err());
}

#[test]
fn balanced_levels_give_parents_children_in_proportion_to_their_size() {
    // Far-apart groups of 900, 90 and 10 points, levels [3, 10] = 30 clusters. DeeperCluster's
    // split gives each group 10 children (clusters of ~90, ~9 and ~1 points); the balanced one
    // gives the 30 in proportion to size: 27, 2 (from 2.7) and 1 (at least one each).
    let mut x = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % 1000) as f32 / 1000.0
    };
    for (g, count) in [(0, 900), (1, 90), (2, 10)] {
        for _ in 0..count {
            x.extend_from_slice(&[g as f32 * 100.0 + noise(), noise()]);
        }
    }
    // k-means++ so that level 0 finds the three groups whatever their sizes
    let cfg = KMeansConfig { niter: 20, seed: 5, nredo: 3, init: Init::PlusPlus, ..KMeansConfig::default() };
    let sizes = |labels: &[i64]| {
        let mut s = std::collections::BTreeMap::<i64, usize>::new();
        for &l in labels {
            *s.entry(l).or_default() += 1;
        }
        s.into_values().collect::<Vec<_>>()
    };
    let cv = |s: &[usize]| {
        let m = s.iter().sum::<usize>() as f64 / s.len() as f64;
        (s.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / s.len() as f64).sqrt() / m
    };
    let plain = hierarchical_kmeans_with(&x, 2, &[3, 10], &cfg, Backend::Torch, None, false).unwrap();
    let balanced = hierarchical_kmeans_with(&x, 2, &[3, 10], &cfg, Backend::Torch, None, true).unwrap();
    let (sp, sb) = (sizes(plain.final_labels()), sizes(balanced.final_labels()));
    println!("final cluster sizes: DeeperCluster split {sp:?} (cv {:.2}); balanced {sb:?} (cv {:.2})", cv(&sp), cv(&sb));
    assert_eq!(sb.len(), 30);
    assert!(balanced.final_labels().iter().all(|l| (0..30).contains(l)));
    // children per parent: 27 / 2 or 3 / at least 1, numbered consecutively in parent order
    let children = |parent: i64| {
        let set: std::collections::BTreeSet<i64> = balanced.labels[0].iter().zip(balanced.final_labels()).filter(|(p, _)| **p == parent).map(|(_, l)| *l).collect();
        set.into_iter().collect::<Vec<_>>()
    };
    let big = balanced.labels[0][0];
    let kids = children(big);
    assert_eq!(kids.len(), 27, "{kids:?}");
    assert_eq!(kids.last().unwrap() - kids.first().unwrap() + 1, kids.len() as i64, "not consecutive: {kids:?}");
    assert!(cv(&sb) < cv(&sp) / 2.0, "balanced cv {} vs {}", cv(&sb), cv(&sp));
}
