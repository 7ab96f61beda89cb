//! k-means over the ranks of a process group: each rank holds a contiguous share of the points
//! (rank order = point order); every Lloyd iteration assigns the local points and all-reduces the
//! per-cluster sums, counts and the objective, so every rank applies the same centroid update.
//! The initial centroids are the points the single-process torch backend would pick
//! (faiss' `rand_perm` over the global index), assembled by an all-reduce of the rows each rank
//! owns, and empty clusters are split exactly as faiss splits them (same counts on every rank),
//! so the result equals [`super::kmeans::torch_kmeans`] on the concatenated points up to the
//! summation order of the centroid sums.
//!
//! Unlike the single-process backends, every point takes part in training (no
//! `max_points_per_centroid` subsampling) and there is one run (`nredo` 1).

use super::error::{ClusterError, Result};
use super::kmeans::{faiss_seed, split_clusters, torch_assign, EmptyClusterPolicy, Init, KMeansConfig, KMeansResult};
use super::rng::faiss_rand_perm;
use crate::dist::{ProcessGroup, ReduceOp};
use tch::{Device, Kind, Tensor};

pub(super) fn dist_err(e: crate::dist::DistError) -> ClusterError {
    ClusterError::Invalid(format!("distributed k-means: {e}"))
}

/// k-means of the points `local` (this rank's rows, row-major, `d` columns) together with the
/// other ranks' rows. Every rank must call it with the same configuration; every rank gets the
/// labels and distances of *all* points, in rank order.
pub fn distributed_kmeans(local: &[f32], d: usize, cfg: &KMeansConfig, group: &ProcessGroup) -> Result<KMeansResult> {
    if d == 0 || !local.len().is_multiple_of(d) {
        return Err(ClusterError::Invalid(format!("k-means: {} values is not a multiple of d = {d}", local.len())));
    }
    if cfg.init != Init::Random {
        return Err(ClusterError::Invalid("distributed k-means starts from random points (--init random)".into()));
    }
    let n_local = (local.len() / d) as i64;
    let counts: Vec<i64> = Vec::try_from(group.all_gather(&Tensor::from_slice(&[n_local])).map_err(dist_err)?)?;
    let n: i64 = counts.iter().sum();
    let offset: i64 = counts[..group.rank()].iter().sum();
    let k = cfg.k as i64;
    if k == 0 || k > n {
        return Err(ClusterError::Invalid(format!("k-means: k = {k} must be in 1..={n} (the number of points)")));
    }
    let dev = cfg.device;
    let x = Tensor::from_slice(local).view([n_local, d as i64]).to_device(dev);

    // the single-process torch backend's initial rows, each filled in by the rank that owns it
    let seed = faiss_seed(cfg.seed) as i64 + 1;
    let rows: Vec<i64> = faiss_rand_perm(n as usize, seed).into_iter().take(cfg.k).map(|r| r as i64).collect();
    let mut init = Tensor::zeros([k, d as i64], (Kind::Float, Device::Cpu));
    for (c, &r) in rows.iter().enumerate() {
        if r >= offset && r < offset + n_local {
            init.get(c as i64).copy_(&x.get(r - offset).to_device(Device::Cpu));
        }
    }
    group.all_reduce(&mut init, ReduceOp::Sum).map_err(dist_err)?;
    let mut centroids = init.to_device(dev);
    if cfg.spherical {
        centroids = super::pca::l2_normalize_rows(&centroids);
    }

    let mut objective = Vec::with_capacity(cfg.niter);
    let mut splits = 0;
    for _ in 0..cfg.niter {
        let (labels, dist) = torch_assign(&x, &centroids, cfg.chunk_rows);
        let sums = Tensor::zeros([k, d as i64], (Kind::Float, dev)).index_add(0, &labels, &x);
        let cnt = labels.bincount::<Tensor>(None, k).to_kind(Kind::Float);
        let obj = dist.to_kind(Kind::Float).sum(Kind::Float).reshape([1]);
        // one all-reduce per iteration: [sums (k·d) | counts (k) | objective]
        let mut packed = Tensor::cat(&[sums.reshape([-1]), cnt, obj], 0).to_device(Device::Cpu);
        group.all_reduce(&mut packed, ReduceOp::Sum).map_err(dist_err)?;
        let packed = packed.to_device(dev);
        let sums = packed.narrow(0, 0, k * d as i64).view([k, d as i64]);
        let cnt = packed.narrow(0, k * d as i64, k);
        objective.push(packed.double_value(&[k * d as i64 + k]));
        let nonempty = cnt.gt(0.0);
        let means = sums / cnt.clamp_min(1.0).unsqueeze(1);
        let mut next = means.where_self(&nonempty.unsqueeze(1), &centroids);
        let empty = k - nonempty.sum(Kind::Int64).int64_value(&[]);
        if empty > 0 && cfg.empty == EmptyClusterPolicy::FaissSplit {
            let sizes: Vec<f32> = Vec::try_from(&cnt.to_device(Device::Cpu))?;
            let mut c: Vec<f32> = Vec::try_from(&next.to_device(Device::Cpu).reshape([-1]))?;
            splits += split_clusters(&mut c, d, sizes, n as usize);
            next = Tensor::from_slice(&c).view([k, d as i64]).to_device(dev);
        }
        if cfg.spherical {
            next = super::pca::l2_normalize_rows(&next);
        }
        centroids = next;
    }

    let (labels, dist) = torch_assign(&x, &centroids, cfg.chunk_rows);
    let labels = Tensor::cat(&group.all_gather_varying(&labels.to_device(Device::Cpu)).map_err(dist_err)?, 0);
    let dist = Tensor::cat(&group.all_gather_varying(&dist.to_device(Device::Cpu)).map_err(dist_err)?, 0);
    let inertia = dist.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
    Ok(KMeansResult {
        k: cfg.k,
        d,
        centroids: Vec::<f32>::try_from(&centroids.to_device(Device::Cpu).reshape([-1]))?,
        labels: Vec::<i64>::try_from(&labels)?,
        distances: Vec::<f32>::try_from(&dist)?,
        inertia,
        objective,
        splits,
    })
}
