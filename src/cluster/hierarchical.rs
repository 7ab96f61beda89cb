//! Hierarchical k-means: DeeperCluster's two levels (k1 super-classes over all data, then k2
//! clusters inside each super-class, final label = super × k2 + sub) generalised to any number of
//! levels. Each sub-problem is an ordinary flat k-means on the rows of one parent cluster, so the
//! total cost is about Σ_l n·d·k_l·niter instead of n·d·Πk_l·niter for the flat equivalent: with
//! levels 100,100 that is 50× fewer distance computations than 10,000 flat clusters.
//!
//! Sub-problems run one after another on this process, or, given a process group, are shared out
//! over its ranks (sub-problem p on rank p mod world, as DeeperCluster gives each super-class's
//! clustering to its own ranks) and the level's labels and centroids all-reduced; every
//! sub-problem keeps its seed, so the result is the single process's.

use super::error::{ClusterError, Result};
use super::kmeans::{kmeans, Backend, KMeansConfig};
use crate::dist::{ProcessGroup, ReduceOp};
use tch::Tensor;

#[derive(Debug, Clone)]
pub struct HierarchicalResult {
    /// Branching factor of every level, e.g. [k1, k2].
    pub levels: Vec<usize>,
    /// `labels[l][i]`: the cluster of point i at level l, numbered in 0..Π_{m<=l} levels[m]
    /// (parent × levels[l] + child). The last level is the final assignment.
    pub labels: Vec<Vec<i64>>,
    /// `centroids[l]`: Π_{m<=l} levels[m] × d row-major; rows of clusters that do not exist
    /// (a parent with fewer points than levels[l]) are zero.
    pub centroids: Vec<Vec<f32>>,
    /// Sum of squared distances to the final-level centroids.
    pub inertia: f64,
}

impl HierarchicalResult {
    pub fn final_labels(&self) -> &[i64] {
        self.labels.last().map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn total_clusters(&self) -> usize {
        self.levels.iter().product()
    }
}

/// Clusters `x` (n × d) level by level. `cfg.k` is ignored (the levels give it); every
/// sub-problem uses `cfg` otherwise, with its seed offset by the sub-problem number.
pub fn hierarchical_kmeans(x: &[f32], d: usize, levels: &[usize], cfg: &KMeansConfig, backend: Backend) -> Result<HierarchicalResult> {
    hierarchical_kmeans_shared(x, d, levels, cfg, backend, None)
}

/// [`hierarchical_kmeans`] with the sub-problems shared out over `group` (every rank passes the
/// same `x` and gets the whole result).
pub fn hierarchical_kmeans_shared(x: &[f32], d: usize, levels: &[usize], cfg: &KMeansConfig, backend: Backend, group: Option<&ProcessGroup>) -> Result<HierarchicalResult> {
    if levels.is_empty() || levels.contains(&0) {
        return Err(ClusterError::Invalid(format!("hierarchical k-means: levels must be positive, got {levels:?}")));
    }
    if d == 0 || x.len() % d != 0 {
        return Err(ClusterError::Invalid(format!("hierarchical k-means: {} values is not a multiple of d = {d}", x.len())));
    }
    let n = x.len() / d;
    let mut labels: Vec<Vec<i64>> = Vec::with_capacity(levels.len());
    let mut centroids: Vec<Vec<f32>> = Vec::with_capacity(levels.len());
    // Groups of rows to split at the current level, with the parent label of each group.
    let mut groups: Vec<(i64, Vec<usize>)> = vec![(0, (0..n).collect())];
    let mut width = 1usize;
    let mut inertia = 0.0;
    let mut problem = 0u64;
    for &k in levels {
        width *= k;
        let mut level_labels = vec![-1i64; n];
        let mut level_centroids = vec![0f32; width * d];
        inertia = 0.0;
        for (parent, rows) in &groups {
            if rows.is_empty() {
                continue;
            }
            let sub_k = k.min(rows.len());
            let sub_cfg = KMeansConfig { k: sub_k, seed: cfg.seed.wrapping_add(problem), ..cfg.clone() };
            let mine = group.is_none_or(|g| problem as usize % g.size() == g.rank());
            problem += 1;
            if !mine {
                continue;
            }
            let mut buf = Vec::with_capacity(rows.len() * d);
            for &r in rows {
                buf.extend_from_slice(&x[r * d..(r + 1) * d]);
            }
            let r = kmeans(&buf, d, &sub_cfg, backend)?;
            inertia += r.inertia;
            let base = parent * k as i64;
            for (&row, &sub) in rows.iter().zip(&r.labels) {
                level_labels[row] = base + sub;
            }
            for (c, cent) in r.centroids.chunks(d).enumerate() {
                let at = (base as usize + c) * d;
                level_centroids[at..at + d].copy_from_slice(cent);
            }
        }
        if let Some(g) = group {
            // each row's label and each centroid came from exactly one rank
            let err = |e: crate::dist::DistError| ClusterError::Invalid(format!("hierarchical k-means: {e}"));
            let mut l = Tensor::from_slice(&level_labels);
            g.all_reduce(&mut l, ReduceOp::Max).map_err(err)?;
            level_labels = Vec::try_from(&l)?;
            let mut c = Tensor::from_slice(&level_centroids);
            g.all_reduce(&mut c, ReduceOp::Sum).map_err(err)?;
            level_centroids = Vec::try_from(&c)?;
            inertia = g.all_reduce_f64(inertia, ReduceOp::Sum).map_err(err)?;
        }
        let mut next_groups = Vec::new();
        for (parent, rows) in &groups {
            if rows.is_empty() {
                continue;
            }
            let base = parent * k as i64;
            let mut children: Vec<Vec<usize>> = vec![Vec::new(); k.min(rows.len())];
            for &row in rows {
                children[(level_labels[row] - base) as usize].push(row);
            }
            next_groups.extend(children.into_iter().enumerate().map(|(c, rows)| (base + c as i64, rows)));
        }
        labels.push(level_labels);
        centroids.push(level_centroids);
        groups = next_groups;
    }
    Ok(HierarchicalResult { levels: levels.to_vec(), labels, centroids, inertia })
}
