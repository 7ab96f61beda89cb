//! The clustering step DeepCluster and DeeperCluster share: trunk features of the whole
//! (used part of the) dataset → PCA-whitening + L2 (methods.md §1.4) → flat or two-level
//! k-means (§1.5, §2.2) → one label per record, with the metrics the seeds log.

use super::EpochContext;
use crate::cluster::kmeans::{kmeans, torch_kmeans_shared, Backend, KMeansConfig};
use crate::cluster::metrics;
use crate::cluster::pca::{Pca, PcaConfig};
use crate::cluster::hierarchical::hierarchical_kmeans_shared;
use crate::loader::rng::seed_of;
use crate::train::error::{Result, TrainError};
use crate::train::features::extract;
use serde_json::json;
use tch::{Device, Tensor};

#[derive(Debug, Clone)]
pub struct Assignment {
    /// Cluster of every record in use (-1: the record could not be decoded).
    pub labels: Vec<i64>,
    /// One level up (DeeperCluster's super-cluster of every record), when hierarchical.
    pub parents: Option<Vec<i64>>,
    pub k: usize,
    pub kmeans_loss: f64,
}

/// Snapshot, whiten and cluster into `levels` (one entry: flat k-means; two: super-clusters
/// then sub-clusters inside each). `floor_ratio`: DeeperCluster's eigenvalue floor.
pub fn cluster_epoch(ctx: &mut EpochContext, levels: &[usize], floor_ratio: Option<f64>, previous: Option<&[i64]>) -> Result<Assignment> {
    let started = std::time::Instant::now();
    let fs = extract(ctx.trunk, ctx.ds, ctx.records, &ctx.extract)?;
    let rows = fs.valid_rows();
    let x = fs.features.index_select(0, &Tensor::from_slice(&rows));
    let (n, d) = (x.size()[0] as usize, x.size()[1] as usize);
    let k: usize = levels.iter().product();
    if n < k.max(2) {
        return Err(TrainError::Config(format!("clustering {n} decodable records into {k} clusters: need at least as many records as clusters")));
    }
    let flat: Vec<f32> = Vec::<f32>::try_from(&x.reshape([-1])).map_err(TrainError::Torch)?;
    let cfg = &ctx.cfg.clustering;
    let seed = seed_of(&[ctx.cfg.seed, ctx.epoch, 0xC1]);
    let pca = Pca::fit(&flat, d, &PcaConfig { dim: cfg.dim_pca.min(d), floor_ratio, seed, ..PcaConfig::default() })?;
    let y = pca.transform(&flat)?;
    let dp = pca.d_out();
    let device = ctx.extract.device;
    let backend = cfg.kmeans_backend.unwrap_or(if device == Device::Cpu { Backend::Faiss } else { Backend::Torch });
    // row blocks that depend on n only, so one process and N ranks multiply the same blocks
    let chunk_rows = (n / 8).clamp(1024, 16_384);
    let kcfg = KMeansConfig { k, niter: cfg.niter, seed, max_points_per_centroid: 10_000_000, device, chunk_rows, ..KMeansConfig::default() };
    let (labels_valid, parents_valid, loss) = if levels.len() == 1 {
        let r = match backend {
            // every rank holds all the features: each assigns its share of the rows
            Backend::Torch => torch_kmeans_shared(&y, dp, &kcfg, ctx.extract.group.as_deref())?,
            Backend::Faiss => kmeans(&y, dp, &kcfg, Backend::Faiss)?,
        };
        (r.labels, None, r.inertia)
    } else {
        // data-parallel runs share the super-classes' sub-clusterings out over the ranks
        let r = hierarchical_kmeans_shared(&y, dp, levels, &kcfg, backend, ctx.extract.group.as_deref())?;
        let parents = r.labels[r.labels.len() - 2].clone();
        (r.final_labels().to_vec(), Some(parents), r.inertia)
    };
    let scatter = |vals: &[i64]| {
        let mut out = vec![-1i64; ctx.records as usize];
        for (&row, &v) in rows.iter().zip(vals) {
            out[row as usize] = v;
        }
        out
    };
    let labels = scatter(&labels_valid);
    let parents = parents_valid.as_deref().map(scatter);
    tracing::info!("epoch {}: clustered {n} features ({d}-d, PCA {dp}) into {k} clusters in {:.1}s", ctx.epoch, started.elapsed().as_secs_f64());
    let a = Assignment { labels, parents, k, kmeans_loss: loss };
    log_assignment(ctx, &a, &fs_truth(&fs.labels, &fs.valid), previous)?;
    Ok(a)
}

fn fs_truth(labels: &[i64], valid: &[bool]) -> Vec<i64> {
    labels.iter().zip(valid).map(|(&l, &v)| if v { l } else { -1 }).collect()
}

/// NMI/AMI/ARI vs the true labels (records that have one), NMI vs the previous assignment and
/// the cluster sizes, as a "cluster" line of the metrics log.
fn log_assignment(ctx: &mut EpochContext, a: &Assignment, truth: &[i64], previous: Option<&[i64]>) -> Result<()> {
    let pairs: Vec<(i64, i64)> = truth.iter().zip(&a.labels).filter(|(&t, &p)| t >= 0 && p >= 0).map(|(&t, &p)| (t, p)).collect();
    let mut fields = json!({ "epoch": ctx.epoch, "k": a.k, "kmeans_loss": a.kmeans_loss });
    if !pairs.is_empty() {
        let (t, p): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
        let r = metrics::report(&t, &p)?;
        fields["nmi_labels"] = json!(r.nmi);
        fields["ami_labels"] = json!(r.ami);
        fields["ari_labels"] = json!(r.ari);
        fields["accuracy_labels"] = json!(r.accuracy);
        tracing::info!("epoch {}: clusters vs labels NMI {:.3} AMI {:.3} ARI {:.3}", ctx.epoch, r.nmi, r.ami, r.ari);
    }
    if let Some(v) = previous.and_then(|p| nmi_between(p, &a.labels)) {
        fields["nmi_prev"] = json!(v);
    }
    let sizes = metrics::cluster_sizes(&a.labels.iter().copied().filter(|&l| l >= 0).collect::<Vec<_>>(), a.k)?;
    fields["empty_clusters"] = json!(sizes.iter().filter(|&&s| s == 0).count());
    fields["sizes"] = json!(sizes);
    ctx.log.write("cluster", fields).map_err(|e| TrainError::Io { path: ctx.log.path().to_path_buf(), source: e })
}

/// NMI between the previous and the current assignment (DeepCluster's stability curve).
pub fn nmi_between(previous: &[i64], current: &[i64]) -> Option<f64> {
    let pairs: Vec<(i64, i64)> = previous.iter().zip(current).filter(|(&a, &b)| a >= 0 && b >= 0).map(|(&a, &b)| (a, b)).collect();
    if pairs.is_empty() {
        return None;
    }
    let (a, b): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
    metrics::nmi(&a, &b).ok()
}
