//! `silt cluster`: PCA-whiten + k-means (flat or hierarchical) a feature file and write the
//! assignments; `silt cluster metrics`: score a labelling against ground truth.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use crate::cluster::assign;
use crate::cluster::hierarchical::hierarchical_kmeans_with;
use crate::cluster::kmeans::{best_device, kmeans, Backend, EmptyClusterPolicy, Init, KMeansConfig};
use crate::cluster::metrics;
use crate::cluster::npy::{self, NpyFile};
use crate::cluster::pca::{Pca, PcaConfig};
use crate::cluster::refine::refine;
use crate::cluster::snapshot::{OpenMode, SnapshotSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: Option<ClusterCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// NMI, AMI, ARI (scikit-learn conventions), purity and Hungarian accuracy of predicted
    /// labels against true labels.
    Metrics(MetricsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// torch on a GPU when one is visible, faiss otherwise.
    Auto,
    /// faiss Clustering on the CPU.
    Faiss,
    /// k-means written with libtorch (GPU or CPU, see --device).
    Torch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceArg {
    /// The libtorch device: auto = the GPU when libtorch sees one; cuda without one is an error.
    pub fn resolve(self) -> anyhow::Result<tch::Device> {
        Ok(match self {
            DeviceArg::Auto => best_device(),
            DeviceArg::Cpu => tch::Device::Cpu,
            DeviceArg::Cuda if tch::Cuda::is_available() => tch::Device::Cuda(0),
            DeviceArg::Cuda => bail!("--device cuda: libtorch sees no CUDA device"),
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum InitArg {
    /// k random points, as faiss chooses them for the same seed.
    Random,
    /// k-means++ (torch backend only).
    PlusPlus,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EmptyArg {
    /// faiss' split of a (likely large) donor cluster — DeepCluster.
    Split,
    /// keep the previous centroid — DeepCluster-v2 (torch backend only).
    Keep,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Features: silt snapshot files (one per rank; repeat the flag or separate with commas) or
    /// one .npy N×D float32 array.
    #[arg(long, required = true, value_delimiter = ',')]
    pub features: Vec<PathBuf>,
    /// Number of clusters for flat k-means (ignored with --levels).
    #[arg(long, default_value_t = 10_000)]
    pub k: usize,
    /// Hierarchical k-means branching per level, e.g. 100,100 = 10,000 clusters
    /// (DeeperCluster: k1 super-classes, then k2 inside each; label = super × k2 + sub).
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<usize>,
    /// With --levels: share each level's clusters out to the parents in proportion to their
    /// sizes (size-balanced hierarchical k-means: every final cluster expects about n / Πlevels
    /// points) instead of the same number per parent; labels numbered consecutively.
    #[arg(long, requires = "levels")]
    pub balanced: bool,
    /// With --levels: then this many Lloyd iterations over all final clusters at once (each one
    /// flat assignment), so that points can leave their parent cluster: closer to flat k-means.
    /// The final labels and centroids are the refined ones; the per-level files keep the
    /// hierarchy as it was before.
    #[arg(long, default_value_t = 0, requires = "levels")]
    pub refine: usize,
    /// PCA output dimension, with whitening and L2 normalisation (DeepCluster: 256); 0 = none.
    #[arg(long, default_value_t = 256)]
    pub pca: usize,
    /// Fit the PCA on at most this many randomly chosen rows.
    #[arg(long, default_value_t = 1_000_000)]
    pub pca_sample: usize,
    /// Added to the eigenvalues before whitening (DeepCluster/faiss: 0).
    #[arg(long, default_value_t = 0.0)]
    pub pca_eps: f64,
    /// Apply this saved PCA (pca.safetensors from an earlier run) instead of fitting one.
    #[arg(long)]
    pub pca_load: Option<PathBuf>,
    /// k-means implementation.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Device for the torch backend.
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// k-means iterations (DeepCluster 20, faiss default 25).
    #[arg(long, default_value_t = 20)]
    pub niter: usize,
    /// Runs from different starts; the lowest objective wins.
    #[arg(long, default_value_t = 1)]
    pub nredo: usize,
    /// Random seed (initial centroids, sampling).
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Train on at most k × this many points (faiss default 256; DeepCluster 10,000,000).
    #[arg(long, default_value_t = 256)]
    pub max_points_per_centroid: usize,
    /// L2-normalise the centroids after every update (DeepCluster-v2).
    #[arg(long)]
    pub spherical: bool,
    /// Initial centroids (torch backend).
    #[arg(long, value_enum, default_value_t = InitArg::Random)]
    pub init: InitArg,
    /// Empty-cluster policy (torch backend; faiss always splits).
    #[arg(long, value_enum, default_value_t = EmptyArg::Split)]
    pub empty: EmptyArg,
    /// Output directory: ids.npy, labels.npy, centroids.npy, level{l}_*.npy, pca.safetensors,
    /// report.json.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// True labels: .npy (any integer type) or text, one integer per line.
    #[arg(long)]
    pub labels: PathBuf,
    /// Predicted cluster labels, same formats and order.
    #[arg(long)]
    pub pred: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ClusterArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            Some(ClusterCommand::Metrics(m)) => m.run(out),
            None => self.run.run(out),
        }
    }
}

impl MetricsArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let truth = assign::read_labels(&self.labels)?;
        let pred = assign::read_labels(&self.pred)?;
        let r = metrics::report(&truth, &pred)?;
        if self.json {
            writeln!(out, "{}", serde_json::to_string(&r)?)?;
        } else {
            writeln!(out, "points {}  classes {}  clusters {}", r.n, r.classes, r.clusters)?;
            writeln!(out, "NMI (arithmetic) {:.6}\nNMI (geometric)  {:.6}\nAMI              {:.6}", r.nmi, r.nmi_geometric, r.ami)?;
            writeln!(out, "ARI              {:.6}\npurity           {:.6}\naccuracy (Hungarian) {:.6}", r.ari, r.purity, r.accuracy)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Features and ids from a .npy array or a set of snapshots.
fn load_features(paths: &[PathBuf]) -> anyhow::Result<(Vec<f32>, usize, Vec<u64>)> {
    if paths.len() == 1 && paths[0].extension().is_some_and(|e| e == "npy") {
        let a = NpyFile::open(&paths[0])?;
        if a.shape.len() != 2 {
            bail!("{}: expected an N×D array, found shape {:?}", paths[0].display(), a.shape);
        }
        let n = a.shape[0];
        return Ok((a.to_f32()?, a.shape[1], (0..n as u64).collect()));
    }
    let set = SnapshotSet::open(paths, OpenMode::Verify)?;
    Ok((set.to_vec(), set.dim(), set.ids()))
}

fn spinner(msg: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb.set_message(msg.to_string());
    tracing::info!("{msg}");
    pb
}

impl RunArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let dir = self.out.as_deref().context("--out is required")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut timings = serde_json::Map::new();

        let t = Instant::now();
        let pb = spinner("loading features");
        let (mut x, mut d, ids) = load_features(&self.features)?;
        let n = ids.len();
        pb.finish_and_clear();
        timings.insert("load_s".into(), json!(t.elapsed().as_secs_f64()));

        let t = Instant::now();
        if let Some(p) = &self.pca_load {
            let _pb = spinner("applying saved PCA");
            let pca = Pca::load(p)?;
            if pca.d_in() != d {
                bail!("{}: PCA expects dimension {}, features have {d}", p.display(), pca.d_in());
            }
            x = pca.transform(&x)?;
            d = pca.d_out();
        } else if self.pca > 0 {
            let _pb = spinner(&format!("PCA {d} -> {} (whiten, L2)", self.pca));
            let cfg = PcaConfig { dim: self.pca, eps: self.pca_eps, max_fit_rows: self.pca_sample, seed: self.seed, ..PcaConfig::default() };
            let pca = Pca::fit(&x, d, &cfg)?;
            pca.save(&dir.join("pca.safetensors"))?;
            x = pca.transform(&x)?;
            d = pca.d_out();
        }
        timings.insert("pca_s".into(), json!(t.elapsed().as_secs_f64()));

        let backend = match self.backend {
            BackendArg::Faiss => Backend::Faiss,
            BackendArg::Torch => Backend::Torch,
            BackendArg::Auto if tch::Cuda::is_available() => Backend::Torch,
            BackendArg::Auto => Backend::Faiss,
        };
        let device = self.device.resolve()?;
        let cfg = KMeansConfig {
            k: self.k,
            niter: self.niter,
            nredo: self.nredo,
            seed: self.seed,
            max_points_per_centroid: self.max_points_per_centroid,
            spherical: self.spherical,
            init: match self.init {
                InitArg::Random => Init::Random,
                InitArg::PlusPlus => Init::PlusPlus,
            },
            empty: match self.empty {
                EmptyArg::Split => EmptyClusterPolicy::FaissSplit,
                EmptyArg::Keep => EmptyClusterPolicy::KeepPrevious,
            },
            device,
            ..KMeansConfig::default()
        };

        // Under a launcher (torchrun, srun, mpirun) flat k-means is shared out: each rank assigns
        // its contiguous share of the points and the centroid sums are all-reduced; rank 0 writes.
        let (launch, group) = crate::dist::init_from_env().context("joining the process group")?;
        let t = Instant::now();
        let (labels, centroids, k_total, inertia, objective) = if let (Some(g), true) = (&group, self.levels.is_empty()) {
            let (start, end) = (n * g.rank() / g.size(), n * (g.rank() + 1) / g.size());
            let _pb = spinner(&format!("distributed k-means: {n} points over {} ranks, d {d}, k {}", g.size(), self.k));
            let r = crate::cluster::distributed::distributed_kmeans(&x[start * d..end * d], d, &cfg, g)?;
            (r.labels, r.centroids, self.k, r.inertia, r.objective)
        } else if self.levels.is_empty() {
            let _pb = spinner(&format!("k-means: {n} points, d {d}, k {} ({backend:?}, {device:?})", self.k));
            let r = kmeans(&x, d, &cfg, backend)?;
            (r.labels, r.centroids, self.k, r.inertia, r.objective)
        } else {
            let _pb = spinner(&format!("hierarchical k-means {:?}: {n} points, d {d} ({backend:?})", self.levels));
            let h = hierarchical_kmeans_with(&x, d, &self.levels, &cfg, backend, group.as_deref(), self.balanced)?;
            for (l, (lab, cen)) in h.labels.iter().zip(&h.centroids).enumerate().filter(|_| launch.rank == 0) {
                assign::write_level(dir, l, lab, cen, d)?;
            }
            let k_total = h.total_clusters();
            let centroids = h.centroids.last().map(Vec::as_slice).unwrap_or_default();
            if self.refine > 0 {
                let mut alive = vec![false; k_total];
                for &l in h.final_labels() {
                    if let Some(a) = usize::try_from(l).ok().and_then(|l| alive.get_mut(l)) {
                        *a = true;
                    }
                }
                timings.insert("hierarchical_s".into(), json!(t.elapsed().as_secs_f64()));
                tracing::info!("refining: {} global iterations over {} clusters", self.refine, alive.iter().filter(|&&a| a).count());
                let r = refine(&x, d, centroids, &alive, self.refine, backend, &cfg)?;
                (r.labels, r.centroids, k_total, r.inertia, Vec::new())
            } else {
                (h.final_labels().to_vec(), centroids.to_vec(), k_total, h.inertia, Vec::new())
            }
        };
        timings.insert("kmeans_s".into(), json!(t.elapsed().as_secs_f64()));
        if launch.rank != 0 {
            return Ok(ExitCode::SUCCESS);
        }

        assign::write_flat(dir, &ids, &labels, &centroids, d)?;
        let sizes = metrics::size_summary(&metrics::cluster_sizes(&labels, k_total)?);
        let report = json!({
            "points": n, "dim": d, "clusters": k_total, "levels": self.levels, "balanced": self.balanced, "refine": self.refine,
            "backend": if group.is_some() && self.levels.is_empty() { json!("torch-distributed") } else { json!(backend) },
            "ranks": launch.world, "device": format!("{device:?}"),
            "inertia": inertia, "objective": objective, "sizes": sizes, "timings": timings,
            "config": {"niter": self.niter, "nredo": self.nredo, "seed": self.seed, "pca": self.pca,
                       "max_points_per_centroid": self.max_points_per_centroid, "spherical": self.spherical},
        });
        npy::atomic_write(&dir.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
        writeln!(
            out,
            "clustered {n} points (d {d}) into {k_total} clusters ({} non-empty, largest {}) in {:.2} s; inertia {inertia:.6e}; wrote {}",
            sizes.non_empty,
            sizes.max,
            timings["kmeans_s"].as_f64().unwrap_or(0.0),
            display(dir)
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
