//! Lloyd iterations over a whole set of clusters from given centroids: what brings a hierarchical
//! k-means result close to a flat one. Hierarchical k-means never moves a point out of its parent
//! cluster, so a point near a parent's border stays with the best child of the wrong parent; each
//! global iteration costs one flat assignment (a `niter`-th of flat k-means) and lets it move.

use super::error::{ClusterError, Result};
use super::kmeans::{faiss_assign, torch_assign, Backend, KMeansConfig};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Refined {
    /// Cluster of every point, in the numbering of the input centroids.
    pub labels: Vec<i64>,
    /// The updated centroids, same shape and numbering as the input (dead rows unchanged).
    pub centroids: Vec<f32>,
    /// Σ squared distances of the last assignment, accumulated in f64.
    pub inertia: f64,
}

/// `iters` rounds of: assign every point of `x` (n × d) to its nearest centroid among the rows of
/// `centroids` whose `alive` flag is set, then move each centroid to the mean of its points (a
/// cluster that receives none keeps its centroid). The labels are those of the last assignment.
/// The torch backend runs on `cfg.device` in blocks of `cfg.chunk_rows`.
pub fn refine(x: &[f32], d: usize, centroids: &[f32], alive: &[bool], iters: usize, backend: Backend, cfg: &KMeansConfig) -> Result<Refined> {
    if d == 0 || !x.len().is_multiple_of(d) || centroids.len() != alive.len() * d {
        return Err(ClusterError::Invalid(format!(
            "refine: {} values, {} centroid values for {} clusters, d = {d}",
            x.len(),
            centroids.len(),
            alive.len()
        )));
    }
    let ids: Vec<usize> = (0..alive.len()).filter(|&c| alive[c]).collect();
    if ids.is_empty() {
        return Err(ClusterError::Invalid("refine: no live cluster".into()));
    }
    let mut centroids = centroids.to_vec();
    let x_tensor = match backend {
        Backend::Torch => Some(Tensor::from_slice(x).view([-1, d as i64]).to_device(cfg.device)),
        Backend::Faiss => None,
    };
    let mut refined = Refined { labels: Vec::new(), centroids: Vec::new(), inertia: 0.0 };
    for _ in 0..iters.max(1) {
        // the live rows, compacted: assignment indexes into them
        let live: Vec<f32> = ids.iter().flat_map(|&c| centroids[c * d..(c + 1) * d].iter().copied()).collect();
        let (compact, dists) = match &x_tensor {
            None => faiss_assign(x, d, &live)?,
            Some(xt) => {
                let c = Tensor::from_slice(&live).view([-1, d as i64]).to_device(cfg.device);
                let (l, dist) = torch_assign(xt, &c, cfg.chunk_rows);
                (Vec::try_from(&l.to_device(Device::Cpu))?, Vec::try_from(&dist.to_device(Device::Cpu).to_kind(Kind::Float))?)
            }
        };
        let labels: Vec<i64> = compact.iter().map(|&l| if l < 0 { -1 } else { ids[l as usize] as i64 }).collect();
        let mut sums = vec![0f64; alive.len() * d];
        let mut counts = vec![0usize; alive.len()];
        for (row, &l) in x.chunks_exact(d).zip(&labels) {
            if l < 0 {
                continue;
            }
            let l = l as usize;
            counts[l] += 1;
            for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        for &c in &ids {
            if counts[c] > 0 {
                for (o, s) in centroids[c * d..(c + 1) * d].iter_mut().zip(&sums[c * d..(c + 1) * d]) {
                    *o = (*s / counts[c] as f64) as f32;
                }
            }
        }
        refined.inertia = dists.iter().map(|&v| v as f64).sum();
        refined.labels = labels;
    }
    refined.centroids = centroids;
    Ok(refined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_a_point_to_the_nearer_cluster_and_skips_dead_rows() {
        // clusters at 0 and 10 (dead row 1 at the origin of the line, which must attract nobody);
        // the point at 6 starts labelled with cluster 0 by the caller, refine moves it to 2
        let x = [0.0f32, 1.0, 6.0, 10.0, 11.0];
        let centroids = [0.5f32, 0.0, 10.5];
        let alive = [true, false, true];
        for backend in [Backend::Faiss, Backend::Torch] {
            let r = refine(&x, 1, &centroids, &alive, 2, backend, &KMeansConfig::default()).unwrap();
            assert_eq!(r.labels, vec![0, 0, 2, 2, 2], "{backend:?}");
            assert_eq!(r.centroids, vec![0.5, 0.0, 9.0], "{backend:?}");
            // last assignment against (0.5, 9): 0.25 + 0.25 + 9 + 1 + 4
            assert!((r.inertia - 14.5).abs() < 1e-4, "{backend:?}: {}", r.inertia);
        }
    }
}
