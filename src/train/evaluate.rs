//! Per-epoch evaluation of the trunk against held-out labels: weighted kNN (k = 200, T = 0.07,
//! train-set features as the memory) and k-means with as many clusters as classes on the test
//! features, scored with NMI / AMI / ARI.

use super::config::TrainConfig;
use super::error::{Result, TrainError};
use super::features::{extract, ExtractOptions, FeatureSet};
use crate::cluster::kmeans::{kmeans, Backend, KMeansConfig};
use crate::cluster::metrics;
use crate::eval::knn::{knn_eval, KnnConfig};
use crate::model::Network;
use serde::Serialize;
use serde_json::json;
use silt_shards::Dataset;
use std::sync::Arc;
use tch::Tensor;

#[derive(Debug, Clone, Serialize)]
pub struct EvalSummary {
    pub knn_top1: f64,
    pub knn_top5: f64,
    pub nmi: f64,
    pub ami: f64,
    pub ari: f64,
    pub train_images: usize,
    pub test_images: usize,
}

impl EvalSummary {
    pub fn to_json(&self, epoch: i64) -> serde_json::Value {
        json!({ "epoch": epoch, "knn_top1": self.knn_top1, "knn_top5": self.knn_top5, "nmi_kmeans": self.nmi,
                "ami_kmeans": self.ami, "ari_kmeans": self.ari, "train_images": self.train_images, "test_images": self.test_images })
    }
}

/// Rows that decoded and carry a label: (features, labels).
pub fn labelled(fs: &FeatureSet) -> (Tensor, Vec<i64>) {
    let rows: Vec<i64> = (0..fs.valid.len()).filter(|&i| fs.valid[i] && fs.labels[i] >= 0).map(|i| i as i64).collect();
    let labels = rows.iter().map(|&i| fs.labels[i as usize]).collect();
    (fs.features.index_select(0, &Tensor::from_slice(&rows)), labels)
}

pub fn evaluate(trunk: &dyn Network, train: &Arc<Dataset>, train_records: u64, test: &Arc<Dataset>, cfg: &TrainConfig, opts: &ExtractOptions) -> Result<EvalSummary> {
    let test_records = cfg.eval_limit.map_or(test.len(), |l| l.min(test.len()));
    let (xtr, ytr) = labelled(&extract(trunk, train, train_records, opts)?);
    let (xte, yte) = labelled(&extract(trunk, test, test_records, opts)?);
    evaluate_features(&xtr, &ytr, &xte, &yte, cfg.seed)
}

/// kNN and k-means scores of ready-made features.
pub fn evaluate_features(xtr: &Tensor, ytr: &[i64], xte: &Tensor, yte: &[i64], seed: u64) -> Result<EvalSummary> {
    if ytr.is_empty() || yte.is_empty() {
        return Err(TrainError::Data("evaluation needs labelled records in both the training and the evaluation data".into()));
    }
    let classes = ytr.iter().chain(yte).max().map_or(0, |&m| m as usize + 1);
    let knn = knn_eval(xtr, ytr, xte, yte, classes, &KnnConfig::default()).map_err(|e| TrainError::Data(e.to_string()))?;
    // k-means with k = classes on the L2-normalised test features.
    let xn = xte / xte.norm_scalaropt_dim(2, [1i64], true).clamp_min(1e-12);
    let d = xn.size()[1] as usize;
    let flat = Vec::<f32>::try_from(&xn.reshape([-1]))?;
    let k = classes.min(yte.len());
    let r = kmeans(&flat, d, &KMeansConfig { k, niter: 20, seed, max_points_per_centroid: 10_000_000, ..KMeansConfig::default() }, Backend::Faiss)?;
    let rep = metrics::report(yte, &r.labels)?;
    Ok(EvalSummary { knn_top1: knn.top1, knn_top5: knn.top5, nmi: rep.nmi, ami: rep.ami, ari: rep.ari, train_images: ytr.len(), test_images: yte.len() })
}
