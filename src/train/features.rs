//! Feature snapshots: the trunk run in eval mode over a dataset in file order, with the
//! evaluation transform (Resize + CenterCrop), as DeepCluster computes features for clustering.

use super::error::{Result, TrainError};
use crate::dist::{ProcessGroup, ReduceOp};
use crate::loader::presets::IMAGENET_STD;
use crate::loader::{cpu_decoder_factory, run_epoch, Geometry, LoaderConfig, Pipeline, ViewSpec};
use crate::model::Network;
use silt_shards::Dataset;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The evaluation view for crops of `crop` pixels: Resize(crop·256/224) + CenterCrop(crop).
pub fn eval_pipeline(crop: u32) -> Pipeline {
    let resize = ((crop as f64) * 256.0 / 224.0).round() as u32;
    Pipeline {
        name: "eval".into(),
        views: vec![ViewSpec { geometry: Geometry::ResizeCenter { resize }, flip: 0.0, ..ViewSpec::rrc(1, crop, (1.0, 1.0)) }],
        mean: crate::loader::presets::IMAGENET_MEAN,
        std: IMAGENET_STD,
    }
}

/// Features of records `0..count`, row i = record i.
#[derive(Debug)]
pub struct FeatureSet {
    /// [count, d] f32 on the CPU; rows of records that failed to decode are zero.
    pub features: Tensor,
    /// Record i decoded.
    pub valid: Vec<bool>,
    /// The records' labels (-1 where none).
    pub labels: Vec<i64>,
}

impl FeatureSet {
    pub fn valid_count(&self) -> usize {
        self.valid.iter().filter(|&&v| v).count()
    }
    /// Indices of the valid rows.
    pub fn valid_rows(&self) -> Vec<i64> {
        self.valid.iter().enumerate().filter(|(_, &v)| v).map(|(i, _)| i as i64).collect()
    }
}

pub struct ExtractOptions {
    pub crop: u32,
    pub batch_size: usize,
    pub workers: usize,
    pub device: Device,
    /// Data-parallel runs: every rank of the group extracts its contiguous share of the records
    /// and the shares are all-gathered, so each rank ends with the whole set (every rank must
    /// call). None: this process extracts everything.
    pub group: Option<Arc<ProcessGroup>>,
}

/// Runs `f` on every eval-mode batch of the first `count` records and places its rows.
pub fn extract_with(ds: &Arc<Dataset>, count: u64, opts: &ExtractOptions, f: &dyn Fn(&Tensor) -> Tensor) -> Result<FeatureSet> {
    let (start, end) = match &opts.group {
        Some(g) => (count * g.rank() as u64 / g.size() as u64, count * (g.rank() as u64 + 1) / g.size() as u64),
        None => (0, count),
    };
    let (rows, mut valid, mut labels) = extract_range(ds, start, end, opts, f)?;
    let features = match (&opts.group, rows) {
        (None, Some(rows)) => rows,
        (None, None) => return Err(TrainError::Data(format!("{}: none of the first {count} records could be decoded", ds.dir().display()))),
        (Some(g), rows) => {
            // a rank whose share did not decode at all still needs the width to take part
            let d = g.all_reduce_f64(rows.as_ref().map_or(0.0, |r| r.size()[1] as f64), ReduceOp::Max)? as i64;
            if d == 0 {
                return Err(TrainError::Data(format!("{}: none of the first {count} records could be decoded", ds.dir().display())));
            }
            let rows = rows.unwrap_or_else(|| Tensor::zeros([(end - start) as i64, d], (Kind::Float, Device::Cpu)));
            let features = Tensor::cat(&g.all_gather_varying(&rows)?, 0);
            let flags = Tensor::from_slice(&valid.iter().map(|&v| v as i64).collect::<Vec<_>>());
            valid = Tensor::cat(&g.all_gather_varying(&flags)?, 0).iter::<i64>()?.map(|v| v != 0).collect();
            labels = Vec::try_from(Tensor::cat(&g.all_gather_varying(&Tensor::from_slice(&labels))?, 0))?;
            features
        }
    };
    Ok(FeatureSet { features, valid, labels })
}

/// Features of records `start..end` (rows 0..end-start), None when none decoded.
fn extract_range(ds: &Arc<Dataset>, start: u64, end: u64, opts: &ExtractOptions, f: &dyn Fn(&Tensor) -> Tensor) -> Result<(Option<Tensor>, Vec<bool>, Vec<i64>)> {
    let pipeline = Arc::new(eval_pipeline(opts.crop));
    let cfg = LoaderConfig { batch_size: opts.batch_size, workers: opts.workers, prefetch: 2, seed: 0, drop_last: false };
    let n = (end - start) as usize;
    let indices: Vec<u64> = (start..end).collect();
    let mut rows: Option<Tensor> = None;
    let mut valid = vec![false; n];
    let mut labels = vec![-1i64; n];
    for batch in run_epoch(ds.clone(), pipeline.clone(), indices, 0, &cfg, cpu_decoder_factory(true)) {
        if batch.is_empty() {
            continue;
        }
        let x = batch.view_f32(0, pipeline.mean, pipeline.std, opts.device);
        let y = tch::no_grad(|| f(&x)).to_device(Device::Cpu).to_kind(Kind::Float);
        let d = y.size()[1];
        let out = rows.get_or_insert_with(|| Tensor::zeros([n as i64, d], (Kind::Float, Device::Cpu)));
        let idx: Vec<i64> = batch.indices.iter().map(|&i| (i - start) as i64).collect();
        let _ = out.index_copy_(0, &Tensor::from_slice(&idx), &y);
        for (&i, &l) in batch.indices.iter().zip(&batch.labels) {
            valid[(i - start) as usize] = true;
            labels[(i - start) as usize] = l;
        }
    }
    Ok((rows, valid, labels))
}

/// The trunk's features (eval mode) of the first `count` records.
pub fn extract(trunk: &dyn Network, ds: &Arc<Dataset>, count: u64, opts: &ExtractOptions) -> Result<FeatureSet> {
    extract_with(ds, count, opts, &|x| trunk.forward_t(x, false))
}
