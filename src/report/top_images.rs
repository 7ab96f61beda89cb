//! Which images to show for a filter or a cluster (DeepCluster `visu/activ-retrieval.py`, methods.md
//! §3.6): the images with the highest mean spatial activation of a filter, or the images nearest
//! to a cluster's mean feature.

use super::ReportError;
use tch::{Kind, Tensor};

/// For each column of `scores` ([N, C]: one score per image and filter), the rows of the `count`
/// highest scores, best first, among the rows marked `valid` (images that decoded).
pub fn top_per_column(scores: &Tensor, valid: &[bool], count: usize) -> Result<Vec<Vec<usize>>, ReportError> {
    let size = scores.size();
    if size.len() != 2 || size[0] as usize != valid.len() {
        return Err(ReportError::Invalid(format!("scores of shape {size:?} for {} images", valid.len())));
    }
    let rows: Vec<i64> = valid.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i as i64).collect();
    if rows.is_empty() {
        return Err(ReportError::Invalid("no valid image to rank".into()));
    }
    let rows_t = Tensor::from_slice(&rows);
    let s = scores.to_kind(Kind::Float).index_select(0, &rows_t);
    let k = count.min(rows.len()) as i64;
    let (_, idx) = s.topk(k, 0, true, true);
    let idx = Vec::<i64>::try_from(idx.tr().contiguous().view([-1])).map_err(|e| ReportError::Invalid(e.to_string()))?;
    Ok(idx.chunks(k as usize).map(|c| c.iter().map(|&i| rows[i as usize] as usize).collect()).collect())
}

/// One cluster to draw: its label, its size and the images nearest to its mean, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterImages {
    pub label: i64,
    pub size: usize,
    pub nearest: Vec<usize>,
}

/// The `max_clusters` largest clusters of `labels` (negative = unassigned), each with the `count`
/// images whose L2-normalised feature (row of `features`) has the highest cosine similarity to
/// the cluster's mean normalised feature. Ties in size go to the smaller label.
pub fn nearest_to_cluster_means(features: &Tensor, labels: &[i64], count: usize, max_clusters: usize) -> Result<Vec<ClusterImages>, ReportError> {
    let size = features.size();
    if size.len() != 2 || size[0] as usize != labels.len() {
        return Err(ReportError::Invalid(format!("features of shape {size:?} for {} labels", labels.len())));
    }
    let mut members: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (i, &l) in labels.iter().enumerate().filter(|(_, &l)| l >= 0) {
        members.entry(l).or_default().push(i as i64);
    }
    let mut clusters: Vec<(i64, Vec<i64>)> = members.into_iter().collect();
    clusters.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    clusters.truncate(max_clusters);
    let x = features.to_kind(Kind::Float);
    let x = &x / x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    clusters
        .into_iter()
        .map(|(label, rows)| {
            let f = x.index_select(0, &Tensor::from_slice(&rows));
            let sim = f.matmul(&f.mean_dim([0i64].as_slice(), false, Kind::Float));
            let k = count.min(rows.len()) as i64;
            let (_, idx) = sim.topk(k, 0, true, true);
            let idx = Vec::<i64>::try_from(idx).map_err(|e| ReportError::Invalid(e.to_string()))?;
            Ok(ClusterImages { label, size: rows.len(), nearest: idx.iter().map(|&i| rows[i as usize] as usize).collect() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_per_column_ranks_each_filter_and_skips_invalid_rows() {
        let s = Tensor::from_slice(&[1.0f32, 9.0, 5.0, 2.0, 3.0, 8.0, 7.0, 0.0]).view([4, 2]);
        // Column 0: 1, 5, 3, 7 -> rows 3, 1 (row 3 invalid -> 1, 2). Column 1: 9, 2, 8, 0 -> 0, 2.
        let top = top_per_column(&s, &[true, true, true, false], 2).unwrap();
        assert_eq!(top, vec![vec![1, 2], vec![0, 2]]);
    }

    #[test]
    fn nearest_to_cluster_means_orders_by_size_and_similarity() {
        let f = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.6, 0.4, 0.0, 1.0, 0.1, 0.9]).view([5, 2]);
        let c = nearest_to_cluster_means(&f, &[0, 0, 0, 1, 1], 2, 5).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].label, c[0].size), (0, 3));
        assert_eq!(c[0].nearest, vec![1, 0], "the mean of rows 0-2 points nearest row 1, then row 0");
        assert_eq!((c[1].label, c[1].size), (1, 2));
        assert_eq!(c[1].nearest.len(), 2);
    }
}
