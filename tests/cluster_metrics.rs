//! Clustering metrics against scikit-learn (live, in the project venv) to 1e-9.

mod cluster_common;

use cluster_common::python_json;
use silt::cluster::metrics;
use silt::cluster::rng::SplitMix64;

const ORACLE: &str = r#"
import json, sys
import numpy as np
from sklearn import metrics as M
from scipy.optimize import linear_sum_assignment
out = []
for t, p in json.load(sys.stdin):
    t, p = np.asarray(t, dtype=np.int64), np.asarray(p, dtype=np.int64)
    c = M.cluster.contingency_matrix(t, p)
    r, k = linear_sum_assignment(-c)
    out.append(dict(
        nmi=M.normalized_mutual_info_score(t, p),
        nmi_geometric=M.normalized_mutual_info_score(t, p, average_method="geometric"),
        ami=M.adjusted_mutual_info_score(t, p),
        ari=M.adjusted_rand_score(t, p),
        purity=float(c.max(axis=0).sum() / c.sum()),
        accuracy=float(c[r, k].sum() / c.sum()),
    ))
print(json.dumps(out))
"#;

/// Fixed label pairs covering the ordinary case and every special case scikit-learn handles.
fn cases() -> Vec<(Vec<i64>, Vec<i64>)> {
    let mut rng = SplitMix64::new(2024);
    let mut rand = |n: usize, k: u64| -> Vec<i64> { (0..n).map(|_| rng.below(k) as i64).collect() };
    let mut v = vec![
        (vec![0, 0, 1, 1], vec![0, 0, 1, 1]),              // identical
        (vec![0, 0, 1, 1], vec![1, 1, 0, 0]),              // permuted names
        (vec![0, 0, 0, 0], vec![0, 1, 2, 3]),              // one class, all singletons
        (vec![0, 0, 0, 0], vec![5, 5, 5, 5]),              // both trivial
        (vec![0, 1, 2, 3], vec![0, 1, 2, 3]),              // all singletons
        (vec![0, 0, 1, 2], vec![0, 0, 1, 1]),
        (vec![0, 0, 1, 1], vec![0, 1, 0, 1]),              // independent: MI = 0
        (vec![7], vec![3]),
        (vec![-4, 9, 9, 100, 100, 100], vec![2, 2, 1, 0, 0, 1]), // arbitrary label values
    ];
    v.push((rand(50, 3), rand(50, 4)));
    v.push((rand(500, 10), rand(500, 10)));
    v.push((rand(1000, 10), rand(1000, 30)));
    v.push((rand(300, 40), rand(300, 5)));
    // Mostly agreeing labellings (a real clustering of real classes looks like this).
    let truth = rand(2000, 10);
    let noisy: Vec<i64> = {
        let flips = rand(2000, 10);
        truth.iter().zip(&flips).map(|(&t, &f)| if f < 3 { (t * 7 + f) % 12 } else { (t * 3) % 10 }).collect()
    };
    v.push((truth, noisy));
    v
}

#[test]
fn metrics_match_scikit_learn_to_1e9() {
    let cases = cases();
    let expected = python_json(ORACLE, &serde_json::json!(cases));
    let mut worst = 0f64;
    for (i, (t, p)) in cases.iter().enumerate() {
        let got = metrics::report(t, p).unwrap();
        let want = &expected[i];
        for (name, value) in [
            ("nmi", got.nmi),
            ("nmi_geometric", got.nmi_geometric),
            ("ami", got.ami),
            ("ari", got.ari),
            ("purity", got.purity),
            ("accuracy", got.accuracy),
        ] {
            let w = want[name].as_f64().unwrap();
            worst = worst.max((value - w).abs());
            assert!((value - w).abs() <= 1e-9, "case {i} {name}: silt {value} sklearn {w} (diff {:e})", (value - w).abs());
        }
        // The single-metric entry points agree with the report.
        assert_eq!(metrics::nmi(t, p).unwrap(), got.nmi);
        assert_eq!(metrics::ami(t, p).unwrap(), got.ami);
        assert_eq!(metrics::ari(t, p).unwrap(), got.ari);
    }
    println!("{} label pairs: largest |silt - scikit-learn| over NMI, AMI, ARI, purity, ACC = {worst:e}", cases.len());
}

#[test]
fn stability_is_nmi_between_successive_assignments() {
    let prev = vec![0i64, 0, 1, 1, 2, 2];
    let same_up_to_names = vec![2i64, 2, 0, 0, 1, 1];
    assert_eq!(metrics::assignment_stability(&prev, &same_up_to_names).unwrap(), 1.0);
    let moved = vec![0i64, 0, 1, 2, 2, 2];
    let s = metrics::assignment_stability(&prev, &moved).unwrap();
    assert!(s > 0.5 && s < 1.0, "{s}");
}

#[test]
fn size_summary_counts_empty_and_balance() {
    let sizes = metrics::cluster_sizes(&[0, 0, 0, 1, 3, 3], 5).unwrap();
    assert_eq!(sizes, vec![3, 1, 0, 2, 0]);
    let s = metrics::size_summary(&sizes);
    assert_eq!((s.k, s.non_empty, s.min, s.max), (5, 3, 0, 3));
    assert_eq!(s.median, 1.0);
    // k·Σs²/N² = 5·14/36
    assert!((s.imbalance - 70.0 / 36.0).abs() < 1e-15);
    // bins: 0 -> empty (2 clusters), 1 -> size 1, 2 -> sizes 2..3
    assert_eq!(s.log2_histogram, vec![2, 1, 2]);
    assert!(metrics::cluster_sizes(&[5], 5).is_err());
}

#[test]
fn length_mismatch_is_an_error() {
    assert!(metrics::nmi(&[0i64, 1], &[0i64]).is_err());
}
