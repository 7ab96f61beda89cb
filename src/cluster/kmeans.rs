//! Flat k-means, two interchangeable backends:
//! - [`Backend::Faiss`]: faiss' `Clustering` on the CPU (what DeepCluster runs), exposing niter,
//!   nredo, seed, max points per centroid and the spherical option;
//! - [`Backend::Torch`]: k-means written with libtorch tensors (chunked `x·Cᵀ` distances,
//!   argmin, `index_add` centroid sums), the way DeepCluster-v2 clusters on the GPU. It runs on
//!   CUDA when present and on the CPU otherwise, which is also how tests check it against faiss.
//!
//! Both return labels for *all* points from a final assignment pass against the final
//! centroids, and the inertia (sum of squared L2 distances) of that assignment.

use super::distributed::dist_err;
use super::error::{ClusterError, Result};
use super::rng::{faiss_rand_perm, Mt19937, SplitMix64};
use crate::dist::ProcessGroup;
use faiss::cluster::{Clustering, ClusteringParameters};
use faiss::index::flat::FlatIndexImpl;
use faiss::Index;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Faiss,
    Torch,
}

/// How the torch backend picks its initial centroids (faiss always uses random points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Init {
    /// k distinct random points, chosen exactly as faiss chooses them for the same seed and
    /// redo (mt19937 `rand_perm(n, seed + 1 + redo·15486557)`), so both backends start alike.
    Random,
    /// k-means++ (D² sampling): better starts, costs k passes over the training points.
    PlusPlus,
}

/// What to do with a cluster that received no point in an iteration (torch backend; faiss
/// always splits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EmptyClusterPolicy {
    /// faiss `split_clusters` (used by DeepCluster), reproduced exactly: give the empty cluster a
    /// copy of a donor centroid picked with probability ∝ (size − 1), perturb both by ±1/1024 in
    /// alternate dimensions, and split the donor's count in half. Large clusters are the likely
    /// donors.
    FaissSplit,
    /// DeepCluster-v2: an empty cluster keeps its previous centroid.
    KeepPrevious,
}

#[derive(Debug, Clone)]
pub struct KMeansConfig {
    pub k: usize,
    /// Update iterations (faiss default 25; DeepCluster 20; DeepCluster-v2 10).
    pub niter: usize,
    /// Independent runs with different seeds; the one with the lowest objective is kept.
    pub nredo: usize,
    pub seed: u64,
    /// Train on at most k × this many points (faiss default 256; DeepCluster 10,000,000).
    pub max_points_per_centroid: usize,
    /// L2-normalise centroids after every update (DeepCluster-v2).
    pub spherical: bool,
    pub init: Init,
    pub empty: EmptyClusterPolicy,
    /// Torch backend device (faiss always runs on the CPU here).
    pub device: Device,
    /// Rows per distance block in the torch backend: the block is rows × k floats.
    pub chunk_rows: usize,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 1000,
            niter: 20,
            nredo: 1,
            seed: 1234,
            max_points_per_centroid: 256,
            spherical: false,
            init: Init::Random,
            empty: EmptyClusterPolicy::FaissSplit,
            device: Device::Cpu,
            chunk_rows: 16_384,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KMeansResult {
    pub k: usize,
    pub d: usize,
    /// k × d row-major.
    pub centroids: Vec<f32>,
    /// Cluster of every input point, in 0..k.
    pub labels: Vec<i64>,
    /// Squared L2 distance of every point to its centroid.
    pub distances: Vec<f32>,
    /// Σ distances, accumulated in f64.
    pub inertia: f64,
    /// Training objective per iteration (faiss: `iteration_stats[i].obj`).
    pub objective: Vec<f64>,
    /// Empty clusters re-seeded over all iterations.
    pub splits: usize,
}

fn check_input(x: &[f32], d: usize, k: usize) -> Result<usize> {
    if d == 0 || !x.len().is_multiple_of(d) {
        return Err(ClusterError::Invalid(format!("k-means: {} values is not a multiple of d = {d}", x.len())));
    }
    let n = x.len() / d;
    if k == 0 || k > n {
        return Err(ClusterError::Invalid(format!("k-means: k = {k} must be in 1..={n} (the number of points)")));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(ClusterError::Invalid(format!("k-means: non-finite value in row {}", i / d)));
    }
    Ok(n)
}

pub fn kmeans(x: &[f32], d: usize, cfg: &KMeansConfig, backend: Backend) -> Result<KMeansResult> {
    match backend {
        Backend::Faiss => faiss_kmeans(x, d, cfg),
        Backend::Torch => torch_kmeans(x, d, cfg),
    }
}

/// faiss `Clustering` with an exact `IndexFlatL2`, then one search for the final labels.
pub fn faiss_kmeans(x: &[f32], d: usize, cfg: &KMeansConfig) -> Result<KMeansResult> {
    let n = check_input(x, d, cfg.k)?;
    let mut params = ClusteringParameters::new();
    params.set_niter(cfg.niter as u32);
    params.set_nredo(cfg.nredo.max(1) as u32);
    // faiss keeps the seed in a C `int`: a value past i32::MAX turns negative, which faiss reads
    // as "seed from the clock" (a different clustering every run). Fold it into 0..i32::MAX.
    params.set_seed(faiss_seed(cfg.seed));
    params.set_max_points_per_centroid(cfg.max_points_per_centroid.min(i32::MAX as usize) as u32);
    params.set_min_points_per_centroid(1);
    params.set_spherical(cfg.spherical);
    params.set_verbose(false);
    let mut clustering = Clustering::new_with_params(d as u32, cfg.k as u32, &params)?;
    let mut index = FlatIndexImpl::new_l2(d as u32)?;
    clustering.train(x, &mut index)?;
    let centroids: Vec<f32> = clustering.centroids()?.concat();
    let stats = iteration_stats(&clustering);
    let objective = stats.iter().map(|s| s.obj as f64).collect();
    let splits = stats.iter().map(|s| s.nsplit.max(0) as usize).sum();
    let (labels, distances) = faiss_assign(x, d, &centroids)?;
    debug_assert_eq!(labels.len(), n);
    let inertia = distances.iter().map(|&v| v as f64).sum();
    Ok(KMeansResult { k: cfg.k, d, centroids, labels, distances, inertia, objective, splits })
}

/// faiss' `ClusteringIterationStats` (faiss/Clustering.h), field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // every field mirrored: the layout must match
struct IterationStats {
    obj: f32,
    time: f64,
    time_search: f64,
    imbalance_factor: f64,
    nsplit: i32,
}

/// The per-iteration stats of a trained `Clustering`. The faiss crate's own slice types its
/// elements as zero-sized, so every element of it reads the first iteration; only its pointer
/// and length are used here, with the C layout above.
fn iteration_stats(clustering: &Clustering) -> Vec<IterationStats> {
    let raw = clustering.iteration_stats();
    if raw.is_empty() {
        return Vec::new();
    }
    // SAFETY: faiss returns `iteration_stats.data()` and `.size()` of a std::vector of the C struct
    // mirrored by `IterationStats`; the vector lives as long as `clustering`, which outlives `raw`.
    unsafe { std::slice::from_raw_parts(raw.as_ptr() as *const IterationStats, raw.len()) }.to_vec()
}

/// `seed` folded into the non-negative range of faiss' `int` seed (identity below 2^31 − 1).
pub fn faiss_seed(seed: u64) -> u32 {
    (seed % i32::MAX as u64) as u32
}

/// Nearest centroid of every row by exact L2 search in faiss.
pub fn faiss_assign(x: &[f32], d: usize, centroids: &[f32]) -> Result<(Vec<i64>, Vec<f32>)> {
    let mut index = FlatIndexImpl::new_l2(d as u32)?;
    index.add(centroids)?;
    let r = index.search(x, 1)?;
    let labels = r.labels.iter().map(|l| l.get().map(|v| v as i64).unwrap_or(-1)).collect();
    Ok((labels, r.distances))
}

/// The rows rank `rank` of `world` assigns in [`torch_assign_shared`]: whole blocks of `chunk`
/// rows, contiguous, in rank order.
pub fn shared_rows(n: usize, chunk: usize, rank: usize, world: usize) -> (usize, usize) {
    let chunk = chunk.max(1);
    let blocks = n.div_ceil(chunk);
    let first = blocks * rank / world;
    let last = blocks * (rank + 1) / world;
    ((first * chunk).min(n), (last * chunk).min(n))
}

/// [`torch_assign`] shared out over `group`: every rank assigns its whole blocks of rows (the
/// same blocks, hence the same matrix products, as one process computes) and the labels and
/// distances are all-gathered, so every rank gets exactly the single process's result.
pub fn torch_assign_shared(x: &Tensor, centroids: &Tensor, chunk_rows: usize, group: Option<&ProcessGroup>) -> Result<(Tensor, Tensor)> {
    let Some(g) = group else {
        return Ok(torch_assign(x, centroids, chunk_rows));
    };
    let (start, end) = shared_rows(x.size()[0] as usize, chunk_rows, g.rank(), g.size());
    let (labels, dists) = torch_assign(&x.narrow(0, start as i64, (end - start) as i64), centroids, chunk_rows);
    let labels = Tensor::cat(&g.all_gather_varying(&labels.to_device(Device::Cpu)).map_err(dist_err)?, 0);
    let dists = Tensor::cat(&g.all_gather_varying(&dists.to_device(Device::Cpu)).map_err(dist_err)?, 0);
    Ok((labels.to_device(x.device()), dists.to_device(x.device())))
}

/// Nearest centroid by `argmin(‖c‖² − 2 x·c)` over row blocks; returns labels and squared
/// distances (‖x‖² added back, clamped at 0) as tensors on `x`'s device.
pub fn torch_assign(x: &Tensor, centroids: &Tensor, chunk_rows: usize) -> (Tensor, Tensor) {
    let c_norm = (centroids * centroids).sum_dim_intlist([1i64].as_slice(), false, Kind::Float).unsqueeze(0);
    // −2·Cᵀ once, so each block is a single fused addmm (‖c‖² + x·(−2Cᵀ)); scaling by −2 is exact.
    let ct_neg2 = centroids.tr().contiguous() * -2.0;
    let n = x.size()[0];
    let mut labels = Vec::new();
    let mut dists = Vec::new();
    let mut start = 0i64;
    while start < n {
        let len = (chunk_rows as i64).min(n - start);
        let xb = x.narrow(0, start, len);
        let scores = c_norm.addmm(&xb, &ct_neg2);
        let (min, arg) = scores.min_dim(1, false);
        let x_norm = (&xb * &xb).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        dists.push((min + x_norm).clamp_min(0.0));
        labels.push(arg);
        start += len;
    }
    if labels.is_empty() {
        return (Tensor::zeros([0], (Kind::Int64, x.device())), Tensor::zeros([0], (Kind::Float, x.device())));
    }
    (Tensor::cat(&labels, 0), Tensor::cat(&dists, 0))
}

/// k-means with libtorch tensors on `cfg.device` (DeepCluster-v2's GPU pattern).
pub fn torch_kmeans(x: &[f32], d: usize, cfg: &KMeansConfig) -> Result<KMeansResult> {
    torch_kmeans_shared(x, d, cfg, None)
}

/// [`torch_kmeans`] of the same `x` on every rank of `group`, each rank assigning its share of
/// the rows every iteration ([`torch_assign_shared`]): the result is the single process's,
/// computed about world times faster (the assignment is n·k·d of the n·k·d + n·d per iteration).
pub fn torch_kmeans_shared(x: &[f32], d: usize, cfg: &KMeansConfig, group: Option<&ProcessGroup>) -> Result<KMeansResult> {
    let n = check_input(x, d, cfg.k)?;
    let k = cfg.k;
    let dev = cfg.device;
    let all = Tensor::from_slice(x).view([n as i64, d as i64]).to_device(dev);
    // Subsample the training set like faiss when n > k · max_points_per_centroid.
    let max_train = k.saturating_mul(cfg.max_points_per_centroid.max(1));
    let train = if n > max_train {
        // faiss: the first k·max_points_per_centroid entries of rand_perm(n, seed), in that order.
        let idx: Vec<i64> = faiss_rand_perm(n, faiss_seed(cfg.seed) as i64).into_iter().take(max_train).map(|r| r as i64).collect();
        all.index_select(0, &Tensor::from_slice(&idx).to_device(dev))
    } else {
        all.shallow_clone()
    };
    let mut best: Option<(f64, Tensor, Vec<f64>, usize)> = None;
    for redo in 0..cfg.nredo.max(1) {
        let seed = faiss_seed(cfg.seed) as i64 + 1 + redo as i64 * 15_486_557;
        let (centroids, objective, splits) = torch_lloyd(&train, cfg, seed, group)?;
        let (_, dist) = torch_assign_shared(&train, &centroids, cfg.chunk_rows, group)?;
        let obj = dist.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        if best.as_ref().is_none_or(|b| obj < b.0) {
            best = Some((obj, centroids, objective, splits));
        }
    }
    let (_, centroids, objective, splits) = best.ok_or_else(|| ClusterError::Invalid("k-means: no run".into()))?;
    let (labels, dist) = torch_assign_shared(&all, &centroids, cfg.chunk_rows, group)?;
    let inertia = dist.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
    Ok(KMeansResult {
        k,
        d,
        centroids: Vec::<f32>::try_from(&centroids.to_device(Device::Cpu).reshape([-1]))?,
        labels: Vec::<i64>::try_from(&labels.to_device(Device::Cpu))?,
        distances: Vec::<f32>::try_from(&dist.to_device(Device::Cpu))?,
        inertia,
        objective,
        splits,
    })
}

/// Lloyd iterations from one initialisation; returns centroids, per-iteration objective, splits.
fn torch_lloyd(x: &Tensor, cfg: &KMeansConfig, seed: i64, group: Option<&ProcessGroup>) -> Result<(Tensor, Vec<f64>, usize)> {
    let (n, d) = (x.size()[0] as usize, x.size()[1]);
    let k = cfg.k as i64;
    let mut rng = SplitMix64::new(seed as u64);
    let mut centroids = match cfg.init {
        Init::Random => {
            let rows: Vec<i64> = faiss_rand_perm(n, seed).into_iter().take(cfg.k).map(|r| r as i64).collect();
            x.index_select(0, &Tensor::from_slice(&rows).to_device(x.device()))
        }
        Init::PlusPlus => plus_plus_init(x, cfg.k, &mut rng, cfg.chunk_rows),
    };
    if cfg.spherical {
        centroids = super::pca::l2_normalize_rows(&centroids);
    }
    let mut objective = Vec::with_capacity(cfg.niter);
    let mut splits = 0;
    for _ in 0..cfg.niter {
        let (labels, dist) = torch_assign_shared(x, &centroids, cfg.chunk_rows, group)?;
        objective.push(dist.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]));
        let sums = Tensor::zeros([k, d], (Kind::Float, x.device())).index_add(0, &labels, x);
        let counts = labels.bincount::<Tensor>(None, k).to_kind(Kind::Float);
        let nonempty = counts.gt(0.0);
        let means = sums / counts.clamp_min(1.0).unsqueeze(1);
        // Empty clusters keep their previous centroid first; FaissSplit then overwrites them.
        let mut next = means.where_self(&nonempty.unsqueeze(1), &centroids);
        let empty = (cfg.k as i64) - nonempty.sum(Kind::Int64).int64_value(&[]);
        if empty > 0 && cfg.empty == EmptyClusterPolicy::FaissSplit {
            let counts: Vec<f32> = Vec::try_from(&counts.to_device(Device::Cpu))?;
            let mut c: Vec<f32> = Vec::try_from(&next.to_device(Device::Cpu).reshape([-1]))?;
            splits += split_clusters(&mut c, d as usize, counts, n);
            next = Tensor::from_slice(&c).view([k, d]).to_device(x.device());
        }
        if cfg.spherical {
            next = super::pca::l2_normalize_rows(&next);
        }
        centroids = next;
    }
    Ok((centroids, objective, splits))
}

/// faiss `split_clusters`: every empty cluster takes a perturbed copy of a donor chosen with
/// probability (size − 1)/(n − k), scanning clusters cyclically from 0. Returns splits made.
/// Like faiss, the generator is mt19937(1234) afresh at every call.
pub(crate) fn split_clusters(centroids: &mut [f32], d: usize, mut sizes: Vec<f32>, n: usize) -> usize {
    const EPS: f32 = 1.0 / 1024.0;
    let mut rng = Mt19937::new(1234);
    let k = sizes.len();
    if n <= k {
        return 0;
    }
    let mut nsplit = 0;
    for ci in 0..k {
        if sizes[ci] != 0.0 {
            continue;
        }
        let mut cj = 0;
        loop {
            let p = (sizes[cj] as f64 - 1.0) / (n - k) as f32 as f64;
            if (rng.faiss_rand_float() as f64) < p {
                break;
            }
            cj = (cj + 1) % k;
        }
        let donor: Vec<f32> = centroids[cj * d..(cj + 1) * d].to_vec();
        for j in 0..d {
            let (up, down) = (1.0 + EPS, 1.0 - EPS);
            let (fi, fj) = if j % 2 == 0 { (up, down) } else { (down, up) };
            centroids[ci * d + j] = donor[j] * fi;
            centroids[cj * d + j] = donor[j] * fj;
        }
        sizes[ci] = sizes[cj] / 2.0;
        sizes[cj] -= sizes[ci];
        nsplit += 1;
    }
    nsplit
}

/// k-means++ seeding: first centre uniform, then each next centre with probability ∝ D(x)²,
/// the squared distance to the nearest centre chosen so far (maintained incrementally).
fn plus_plus_init(x: &Tensor, k: usize, rng: &mut SplitMix64, chunk_rows: usize) -> Tensor {
    let n = x.size()[0];
    let first = rng.below(n as u64) as i64;
    let mut chosen = vec![first];
    let mut d2 = torch_assign(x, &x.narrow(0, first, 1), chunk_rows).1.to_kind(Kind::Double);
    for _ in 1..k {
        let cum = d2.cumsum(0, Kind::Double);
        let total = cum.double_value(&[n - 1]);
        let next = if total <= 0.0 {
            rng.below(n as u64) as i64 // all remaining points coincide with centres
        } else {
            // First index whose cumulative mass reaches u.
            let u = rng.next_f64() * total;
            cum.lt(u).sum(Kind::Int64).int64_value(&[]).min(n - 1)
        };
        chosen.push(next);
        let nd = torch_assign(x, &x.narrow(0, next, 1), chunk_rows).1.to_kind(Kind::Double);
        d2 = d2.minimum(&nd);
    }
    x.index_select(0, &Tensor::from_slice(&chosen).to_device(x.device()))
}

/// `Device::Cuda(0)` when libtorch sees a GPU, else the CPU.
pub fn best_device() -> Device {
    if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    }
}
