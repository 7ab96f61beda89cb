//! PCA-whitening followed by row L2 normalisation: the pre-processing DeepCluster applies to
//! features before k-means (`faiss.PCAMatrix(d, 256, eigen_power=-0.5)`, then L2).
//!
//! The covariance is accumulated and eigendecomposed in f64 on the CPU through libtorch: for
//! d = 4096 that is a 128 MiB matrix and a few seconds, negligible next to k-means. Fitting uses
//! a random sample of rows (faiss uses at most 1000·d points; DeeperCluster ~8.4M), so the cost
//! does not grow with the dataset.
//!
//! Whitening scales component i by (λ_i + eps)^(−power). DeepCluster: power 0.5, **eps 0**
//! (faiss' default). DeeperCluster instead floors λ_i at 1e-5·λ_max ([`PcaConfig::floor_ratio`]).
//! λ_i here is the variance along component i (covariance divided by n). faiss divides by
//! nothing, which changes only a global factor when eps = 0 and is invisible after L2.

use super::error::{ClusterError, Result};
use super::rng::SplitMix64;
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct PcaConfig {
    /// Output dimension (DeepCluster: 256).
    pub dim: usize,
    /// Whitening exponent: 0.5 divides by the standard deviation (DeepCluster), 0 disables.
    pub whitening_power: f64,
    /// Added to every eigenvalue before whitening (DeepCluster / faiss: 0).
    pub eps: f64,
    /// Floor eigenvalues at `floor_ratio · λ_max` before whitening (DeeperCluster: 1e-5).
    pub floor_ratio: Option<f64>,
    /// L2-normalise every output row (DeepCluster: yes).
    pub l2_normalize: bool,
    /// Fit on at most this many rows, drawn without replacement with `seed`.
    pub max_fit_rows: usize,
    pub seed: u64,
}

impl Default for PcaConfig {
    fn default() -> Self {
        PcaConfig { dim: 256, whitening_power: 0.5, eps: 0.0, floor_ratio: None, l2_normalize: true, max_fit_rows: 1_000_000, seed: 0 }
    }
}

/// A fitted PCA: y = normalize(((x − mean) · components) ⊙ scale).
#[derive(Debug)]
pub struct Pca {
    /// [d_in] f32
    pub mean: Tensor,
    /// [d_in, d_out] f32, columns are eigenvectors sorted by decreasing eigenvalue.
    pub components: Tensor,
    /// [d_out] f64 variances along the components.
    pub eigenvalues: Tensor,
    /// [d_out] f32 whitening factors.
    pub scale: Tensor,
    pub l2_normalize: bool,
}

/// Row-chunk size for transforms: bounds the temporary memory to chunk × (d_in + d_out) floats.
const CHUNK_ROWS: usize = 65_536;

impl Pca {
    /// Fits on the rows of `x` (n × d, row-major f32).
    pub fn fit(x: &[f32], d: usize, cfg: &PcaConfig) -> Result<Pca> {
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(ClusterError::Invalid(format!("PCA: {} values is not a multiple of d = {d}", x.len())));
        }
        let n = x.len() / d;
        if cfg.dim == 0 || cfg.dim > d {
            return Err(ClusterError::Invalid(format!("PCA: output dimension {} must be in 1..={d}", cfg.dim)));
        }
        if n < 2 {
            return Err(ClusterError::Invalid(format!("PCA: need at least 2 rows, got {n}")));
        }
        let rows: Vec<usize> = if n > cfg.max_fit_rows {
            let mut r = SplitMix64::new(cfg.seed).sample_without_replacement(n, cfg.max_fit_rows);
            r.sort_unstable();
            r
        } else {
            (0..n).collect()
        };
        let m = rows.len();
        // Accumulate mean and XᵀX in f64 over row chunks so the sample is never duplicated in f64.
        let mut sum = Tensor::zeros([d as i64], (Kind::Double, Device::Cpu));
        let mut gram = Tensor::zeros([d as i64, d as i64], (Kind::Double, Device::Cpu));
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut buf = Vec::with_capacity(chunk.len() * d);
            for &r in chunk {
                buf.extend_from_slice(&x[r * d..(r + 1) * d]);
            }
            let t = Tensor::from_slice(&buf).view([chunk.len() as i64, d as i64]).to_kind(Kind::Double);
            sum += t.sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
            gram += t.tr().mm(&t);
        }
        let mean = &sum / m as f64;
        let cov = (&gram / m as f64) - mean.outer(&mean);
        let (evals, evecs) = cov.f_linalg_eigh("L")?;
        // eigh returns ascending order; keep the largest `dim`.
        let order = evals.argsort(0, true).narrow(0, 0, cfg.dim as i64);
        let mut eigenvalues = evals.index_select(0, &order).clamp_min(0.0);
        let mut components = evecs.index_select(1, &order);
        // Deterministic signs: the largest-magnitude entry of each eigenvector is positive.
        let argmax = components.abs().argmax(0, true);
        let signs = components.gather(0, &argmax, false).sign().squeeze_dim(0);
        let signs = signs.where_self(&signs.ne(0.0), &Tensor::ones_like(&signs));
        components = components * signs.unsqueeze(0);
        if let Some(r) = cfg.floor_ratio {
            let max = eigenvalues.max().double_value(&[]);
            eigenvalues = eigenvalues.clamp_min(r * max);
        }
        let scale = (&eigenvalues + cfg.eps).pow_tensor_scalar(-cfg.whitening_power).to_kind(Kind::Float);
        Ok(Pca {
            mean: mean.to_kind(Kind::Float),
            components: components.to_kind(Kind::Float).contiguous(),
            eigenvalues,
            scale,
            l2_normalize: cfg.l2_normalize,
        })
    }

    pub fn d_in(&self) -> usize {
        self.components.size()[0] as usize
    }

    pub fn d_out(&self) -> usize {
        self.components.size()[1] as usize
    }

    /// Applies the transform to a [n, d_in] f32 tensor on any device (moves the parameters there).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let dev = x.device();
        let y = (x - self.mean.to_device(dev)).mm(&self.components.to_device(dev)) * self.scale.to_device(dev);
        if self.l2_normalize {
            l2_normalize_rows(&y)
        } else {
            y
        }
    }

    /// Transforms row-major f32 rows in chunks; returns n × d_out row-major f32.
    pub fn transform(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (d, k) = (self.d_in(), self.d_out());
        if !x.len().is_multiple_of(d) {
            return Err(ClusterError::Invalid(format!("PCA transform: {} values is not a multiple of d = {d}", x.len())));
        }
        let mut out = Vec::with_capacity(x.len() / d * k);
        for chunk in x.chunks(CHUNK_ROWS * d) {
            let t = Tensor::from_slice(chunk).view([(chunk.len() / d) as i64, d as i64]);
            let y = self.apply(&t);
            out.extend(Vec::<f32>::try_from(&y.reshape([-1]))?);
        }
        Ok(out)
    }

    /// Saves as safetensors (`mean`, `components`, `eigenvalues`, `scale`, `l2_normalize`),
    /// readable from Python with `safetensors.torch.load_file`. Atomic (temporary name + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let flag = Tensor::from_slice(&[self.l2_normalize as i64]);
        let tmp = super::npy::tmp_path(path);
        Tensor::write_safetensors(
            &[
                ("mean", &self.mean),
                ("components", &self.components),
                ("eigenvalues", &self.eigenvalues),
                ("scale", &self.scale),
                ("l2_normalize", &flag),
            ],
            &tmp,
        )?;
        std::fs::rename(&tmp, path).map_err(|e| ClusterError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<Pca> {
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| ClusterError::corrupt(path, format!("not a silt PCA file: {e}")))?;
        let take = |name: &str| -> Result<Tensor> {
            tensors
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| ClusterError::corrupt(path, format!("PCA file has no tensor `{name}`")))
        };
        let pca = Pca {
            mean: take("mean")?,
            components: take("components")?,
            eigenvalues: take("eigenvalues")?,
            scale: take("scale")?,
            l2_normalize: take("l2_normalize")?.int64_value(&[0]) != 0,
        };
        let (d, k) = (pca.components.size(), pca.scale.size());
        if d.len() != 2 || pca.mean.size() != [d[0]] || k != [d[1]] {
            return Err(ClusterError::corrupt(path, "PCA tensors have inconsistent shapes"));
        }
        Ok(pca)
    }
}

/// Divides every row by its L2 norm. Zero rows stay zero (DeepCluster would produce NaN).
pub fn l2_normalize_rows(y: &Tensor) -> Tensor {
    let norm = y.norm_scalaropt_dim(2, [1i64].as_slice(), true).clamp_min(1e-12);
    y / norm
}
