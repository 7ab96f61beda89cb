//! Clustering quality metrics with scikit-learn's conventions (`sklearn.metrics.cluster`,
//! version >= 0.22): natural logarithms, NMI and AMI normalised by the **arithmetic** mean of the
//! two entropies, AMI with the exact expected mutual information, ARI from the pair confusion
//! matrix. The special cases (single cluster, identical partitions) follow scikit-learn too, so
//! numbers from silt and from papers that used scikit-learn can be compared directly.
//!
//! Labels are any ordered type; only equality matters. Two labellings must have the same length.

use super::error::{ClusterError, Result};
use super::hungarian::min_cost_assignment;
use serde::Serialize;

/// Sparse contingency table of two labellings: `n_ij` = points with true class i and cluster j.
#[derive(Debug, Clone)]
pub struct Contingency {
    /// Non-zero cells (class index, cluster index, count), sorted by (class, cluster).
    pub cells: Vec<(usize, usize, u64)>,
    /// a_i: size of every true class (classes compacted to 0..rows in label order).
    pub class_sizes: Vec<u64>,
    /// b_j: size of every predicted cluster (compacted to 0..cols in label order).
    pub cluster_sizes: Vec<u64>,
    pub n: u64,
}

/// Map labels to 0..m in sorted label order (what `np.unique(..., return_inverse=True)` does).
fn compact<T: Copy + Ord>(labels: &[T]) -> (Vec<usize>, usize) {
    let mut uniq: Vec<T> = labels.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let idx = labels.iter().map(|l| uniq.binary_search(l).unwrap_or(0)).collect();
    (idx, uniq.len())
}

impl Contingency {
    pub fn new<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<Self> {
        if truth.len() != pred.len() {
            return Err(ClusterError::Invalid(format!(
                "labellings differ in length: {} true labels, {} predicted",
                truth.len(),
                pred.len()
            )));
        }
        let (ti, rows) = compact(truth);
        let (pi, cols) = compact(pred);
        let mut pairs: Vec<(usize, usize)> = ti.into_iter().zip(pi).collect();
        pairs.sort_unstable();
        let mut cells: Vec<(usize, usize, u64)> = Vec::new();
        for (i, j) in pairs {
            match cells.last_mut() {
                Some(last) if last.0 == i && last.1 == j => last.2 += 1,
                _ => cells.push((i, j, 1)),
            }
        }
        let mut class_sizes = vec![0u64; rows];
        let mut cluster_sizes = vec![0u64; cols];
        for &(i, j, c) in &cells {
            class_sizes[i] += c;
            cluster_sizes[j] += c;
        }
        Ok(Contingency { cells, class_sizes, cluster_sizes, n: truth.len() as u64 })
    }
}

/// Shannon entropy (nats) of a labelling given its cluster sizes; 0 for a single cluster,
/// 1 for an empty labelling (scikit-learn's `entropy`).
pub fn entropy_of_sizes(sizes: &[u64]) -> f64 {
    let sizes: Vec<f64> = sizes.iter().filter(|&&s| s > 0).map(|&s| s as f64).collect();
    if sizes.is_empty() {
        return 1.0;
    }
    if sizes.len() == 1 {
        return 0.0;
    }
    let total: f64 = sizes.iter().sum();
    let log_total = total.ln();
    -sizes.iter().map(|&p| (p / total) * (p.ln() - log_total)).sum::<f64>()
}

/// Mutual information (nats) of the contingency table, as `mutual_info_score`.
pub fn mutual_info(c: &Contingency) -> f64 {
    if c.class_sizes.len() == 1 || c.cluster_sizes.len() == 1 {
        return 0.0;
    }
    let total = c.n as f64;
    let (sum_a, sum_b) = (total, total);
    let mut mi = 0.0;
    for &(i, j, nij) in &c.cells {
        let nij = nij as f64;
        let p = nij / total;
        let outer = (c.class_sizes[i] as i64 * c.cluster_sizes[j] as i64) as f64;
        let log_outer = -outer.ln() + sum_a.ln() + sum_b.ln();
        let term = p * (nij.ln() - total.ln()) + p * log_outer;
        // scikit-learn zeroes terms below machine epsilon before summing.
        mi += if term.abs() < f64::EPSILON { 0.0 } else { term };
    }
    mi.max(0.0)
}

/// Expected mutual information of two random labellings with the given marginals (the
/// hypergeometric model of Vinh et al. 2010), computed with log-gamma as scikit-learn does.
pub fn expected_mutual_info(c: &Contingency) -> f64 {
    let (a, b) = (&c.class_sizes, &c.cluster_sizes);
    if a.len() == 1 || b.len() == 1 {
        return 0.0;
    }
    let n = c.n as f64;
    let lg = |x: f64| libm::lgamma(x);
    let max_nij = a.iter().chain(b.iter()).copied().max().unwrap_or(0) as usize;
    // Tables indexed by n_ij; index 0 is never used in a sum.
    let log_n_nij: Vec<f64> = (0..=max_nij).map(|v| n.ln() + (v.max(1) as f64).ln()).collect();
    let gln_nij: Vec<f64> = (0..=max_nij).map(|v| lg(v.max(1) as f64 + 1.0) + lg(n + 1.0)).collect();
    let gln_n = |x: u64| lg(x as f64 + 1.0);
    let mut emi = 0.0;
    for &ai in a {
        let (log_a, gln_a, gln_na) = ((ai as f64).ln(), gln_n(ai), lg(n - ai as f64 + 1.0));
        for &bj in b {
            let (log_b, gln_b, gln_nb) = ((bj as f64).ln(), gln_n(bj), lg(n - bj as f64 + 1.0));
            let start = (ai as i64 + bj as i64 - c.n as i64).max(1) as u64;
            let end = ai.min(bj);
            for nij in start..=end {
                let k = nij as usize;
                let term1 = nij as f64 / n;
                let term2 = log_n_nij[k] - log_a - log_b;
                let gln = gln_a + gln_b + gln_na + gln_nb
                    - gln_nij[k]
                    - lg((ai - nij) as f64 + 1.0)
                    - lg((bj - nij) as f64 + 1.0)
                    - lg(n - ai as f64 - bj as f64 + nij as f64 + 1.0);
                emi += term1 * term2 * gln.exp();
            }
        }
    }
    emi
}

/// True when both labellings put everything in one cluster (or are empty): the limit case that
/// scikit-learn scores as a perfect match.
fn both_trivial(c: &Contingency) -> bool {
    let (r, k) = (c.class_sizes.len(), c.cluster_sizes.len());
    (r == 1 && k == 1) || (r == 0 && k == 0)
}

/// Normalised mutual information, arithmetic mean normalisation (scikit-learn's default).
/// Note: the DeepCluster paper uses the geometric mean; see [`nmi_geometric`].
pub fn nmi<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(nmi_from(&Contingency::new(truth, pred)?, Mean::Arithmetic))
}

/// NMI normalised by √(H_U·H_V), the definition in the DeepCluster paper.
pub fn nmi_geometric<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(nmi_from(&Contingency::new(truth, pred)?, Mean::Geometric))
}

#[derive(Debug, Clone, Copy)]
enum Mean {
    Arithmetic,
    Geometric,
}

fn nmi_from(c: &Contingency, mean: Mean) -> f64 {
    if both_trivial(c) {
        return 1.0;
    }
    let mi = mutual_info(c);
    if mi == 0.0 {
        return 0.0;
    }
    let (hu, hv) = (entropy_of_sizes(&c.class_sizes), entropy_of_sizes(&c.cluster_sizes));
    let norm = match mean {
        Mean::Arithmetic => (hu + hv) / 2.0,
        Mean::Geometric => (hu * hv).sqrt(),
    };
    mi / norm
}

/// Adjusted mutual information, arithmetic normalisation (scikit-learn's default since 0.22).
pub fn ami<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(ami_from(&Contingency::new(truth, pred)?))
}

fn ami_from(c: &Contingency) -> f64 {
    if both_trivial(c) {
        return 1.0;
    }
    if c.class_sizes.len() == 1 || c.cluster_sizes.len() == 1 {
        return 0.0;
    }
    let mi = mutual_info(c);
    let emi = expected_mutual_info(c);
    let (hu, hv) = (entropy_of_sizes(&c.class_sizes), entropy_of_sizes(&c.cluster_sizes));
    let mut denominator = (hu + hv) / 2.0 - emi;
    // Keep the sign, but never divide by less than machine epsilon (scikit-learn does the same).
    denominator = if denominator < 0.0 { denominator.min(-f64::EPSILON) } else { denominator.max(f64::EPSILON) };
    let mut numerator = mi - emi;
    numerator = if numerator < 0.0 { numerator.min(-f64::EPSILON) } else { numerator.max(f64::EPSILON) };
    numerator / denominator
}

/// Adjusted Rand index from the pair confusion matrix, in exact integer arithmetic.
pub fn ari<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(ari_from(&Contingency::new(truth, pred)?))
}

fn ari_from(c: &Contingency) -> f64 {
    let n = c.n as i128;
    let sum_squares: i128 = c.cells.iter().map(|&(_, _, v)| (v as i128) * (v as i128)).sum();
    let dot_b: i128 = c.cells.iter().map(|&(_, j, v)| v as i128 * c.cluster_sizes[j] as i128).sum();
    let dot_a: i128 = c.cells.iter().map(|&(i, _, v)| v as i128 * c.class_sizes[i] as i128).sum();
    let tp = sum_squares - n;
    let fp = dot_b - sum_squares;
    let fn_ = dot_a - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    let num = tp * tn - fn_ * fp;
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    2.0 * (num as f64) / (den as f64)
}

/// Purity: every cluster votes for its majority class; fraction of points that agree.
pub fn purity<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(purity_from(&Contingency::new(truth, pred)?))
}

fn purity_from(c: &Contingency) -> f64 {
    if c.n == 0 {
        return 0.0;
    }
    let mut best = vec![0u64; c.cluster_sizes.len()];
    for &(_, j, v) in &c.cells {
        best[j] = best[j].max(v);
    }
    best.iter().sum::<u64>() as f64 / c.n as f64
}

/// Clustering accuracy: the best one-to-one map from clusters to classes (Hungarian matching on
/// the contingency table), as IIC/DEC "ACC" and SeLa "Label-Acc". Unmatched clusters count as
/// wrong when there are more clusters than classes.
pub fn hungarian_accuracy<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<f64> {
    Ok(accuracy_from(&Contingency::new(truth, pred)?))
}

fn accuracy_from(c: &Contingency) -> f64 {
    if c.n == 0 {
        return 0.0;
    }
    let (r, k) = (c.class_sizes.len(), c.cluster_sizes.len());
    // Rows must be the smaller side; cost = −count so the minimum cost is the maximum match.
    let (rows, cols, transpose) = if r <= k { (r, k, false) } else { (k, r, true) };
    let mut cost = vec![0i64; rows * cols];
    for &(i, j, v) in &c.cells {
        let (a, b) = if transpose { (j, i) } else { (i, j) };
        cost[a * cols + b] = -(v as i64);
    }
    let assignment = min_cost_assignment(&cost, rows, cols);
    let matched: i64 = assignment.iter().enumerate().map(|(a, &b)| -cost[a * cols + b]).sum();
    matched as f64 / c.n as f64
}

/// NMI between two successive assignments of the same points: DeepCluster's stability curve
/// (NMI(t, t−1)); arithmetic normalisation like [`nmi`].
pub fn assignment_stability<A: Copy + Ord>(previous: &[A], current: &[A]) -> Result<f64> {
    nmi(previous, current)
}

/// Summary of cluster sizes for reports: how balanced a clustering is and how many clusters died.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SizeSummary {
    pub k: usize,
    pub non_empty: usize,
    pub min: u64,
    pub max: u64,
    pub mean: f64,
    pub median: f64,
    /// faiss' imbalance factor k·Σ size² / N² (1 = perfectly balanced).
    pub imbalance: f64,
    /// `histogram[b]` = number of clusters whose size s has 2^(b−1) <= s < 2^b (b = 0: empty).
    pub log2_histogram: Vec<u64>,
}

/// Sizes of clusters 0..k (labels must be in 0..k; others are an error).
pub fn cluster_sizes(labels: &[i64], k: usize) -> Result<Vec<u64>> {
    let mut sizes = vec![0u64; k];
    for &l in labels {
        match usize::try_from(l).ok().filter(|&l| l < k) {
            Some(l) => sizes[l] += 1,
            None => return Err(ClusterError::Invalid(format!("label {l} outside 0..{k}"))),
        }
    }
    Ok(sizes)
}

pub fn size_summary(sizes: &[u64]) -> SizeSummary {
    let k = sizes.len();
    let n: u64 = sizes.iter().sum();
    let mut sorted = sizes.to_vec();
    sorted.sort_unstable();
    let median = match k {
        0 => 0.0,
        _ if k % 2 == 1 => sorted[k / 2] as f64,
        _ => (sorted[k / 2 - 1] + sorted[k / 2]) as f64 / 2.0,
    };
    let mut log2_histogram = Vec::new();
    for &s in sizes {
        let b = (u64::BITS - s.leading_zeros()) as usize;
        if log2_histogram.len() <= b {
            log2_histogram.resize(b + 1, 0);
        }
        log2_histogram[b] += 1;
    }
    let sum_sq: f64 = sizes.iter().map(|&s| (s as f64) * (s as f64)).sum();
    SizeSummary {
        k,
        non_empty: sizes.iter().filter(|&&s| s > 0).count(),
        min: sorted.first().copied().unwrap_or(0),
        max: sorted.last().copied().unwrap_or(0),
        mean: if k == 0 { 0.0 } else { n as f64 / k as f64 },
        median,
        imbalance: if n == 0 { 0.0 } else { k as f64 * sum_sq / (n as f64 * n as f64) },
        log2_histogram,
    }
}

/// Every metric at once, from one contingency table (what `silt cluster metrics` prints).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub n: u64,
    pub classes: usize,
    pub clusters: usize,
    pub nmi: f64,
    pub nmi_geometric: f64,
    pub ami: f64,
    pub ari: f64,
    pub purity: f64,
    pub accuracy: f64,
}

pub fn report<A: Copy + Ord, B: Copy + Ord>(truth: &[A], pred: &[B]) -> Result<Report> {
    let c = Contingency::new(truth, pred)?;
    Ok(Report {
        n: c.n,
        classes: c.class_sizes.len(),
        clusters: c.cluster_sizes.len(),
        nmi: nmi_from(&c, Mean::Arithmetic),
        nmi_geometric: nmi_from(&c, Mean::Geometric),
        ami: ami_from(&c),
        ari: ari_from(&c),
        purity: purity_from(&c),
        accuracy: accuracy_from(&c),
    })
}
