//! The device loader: records -> (nvJPEG or CPU) decode -> batched tensor augmentation ->
//! [`Batch`]es whose views already sit on the training device.
//!
//! JPEGs the GPU decoders take (baseline, 444/422/420/440/grey) are decoded by nvJPEG in one
//! batched call straight into a device tensor; the rest (progressive, CMYK, 411, PNG, raw
//! pixels, anything nvJPEG rejects) are decoded by libjpeg-turbo / `image` on the CPU and
//! uploaded, and counted. The same draws as the CPU loader ([`plan_sample`]) pick every crop
//! and colour op, so switching `--decode` changes where the work runs, not the data
//! distribution. One thread per epoch prepares batches ahead of the consumer (bounded), so
//! the host-side work overlaps the training step.

use super::augment::{augment_view, DecodedBatch, Resample};
use super::nvjpeg::{batch_buffer, NvJpeg, NvJpegError};
use crate::loader::batch::{Batch, DeviceTensor};
use crate::loader::decode::{CpuDecoder, Decode, DecodeError, DecodeRequest, RgbImage};
use crate::loader::multicrop::{plan_sample, Pipeline, SamplePlan};
use crate::loader::workers::log_undecodable;
use silt_shards::{ContentType, Dataset, Record};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::{Device, Tensor};

/// Where JPEGs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    /// libjpeg-turbo on the CPU.
    #[default]
    Cpu,
    /// nvJPEG; an error when it cannot be opened.
    Gpu,
    /// nvJPEG when a CUDA device and the library are there, else the CPU.
    Auto,
}

/// Counters of the device loader (summed over epochs; images and skipped records are counted
/// by the batches themselves).
#[derive(Debug, Default)]
pub struct DeviceLoaderStats {
    pub gpu_decoded: AtomicU64,
    pub cpu_decoded: AtomicU64,
    pub decode_ns: AtomicU64,
    pub augment_ns: AtomicU64,
}

pub struct DeviceLoader {
    pub device: Device,
    nvjpeg: Option<NvJpeg>,
    cpu: CpuDecoder,
    pub resample: Resample,
    pub stats: Arc<DeviceLoaderStats>,
}

/// One sample on its way through a batch.
struct Pending<'a> {
    index: u64,
    rec: Record<'a>,
    size: (u32, u32),
    /// Decoded on the CPU already (None = goes to nvJPEG).
    host: Option<RgbImage>,
}

impl DeviceLoader {
    /// A loader producing batches on `device`. With `Auto`, the reason nvJPEG is not used
    /// comes back as the second value.
    pub fn new(device: Device, mode: DecodeMode) -> Result<(Self, Option<String>), NvJpegError> {
        let cpu = CpuDecoder::new().map_err(|e| NvJpegError::Load { path: "libturbojpeg".into(), reason: e.to_string() })?;
        let (nvjpeg, why_not) = match mode {
            DecodeMode::Cpu => (None, None),
            DecodeMode::Gpu => (Some(NvJpeg::open(device)?), None),
            DecodeMode::Auto => match NvJpeg::open(device) {
                Ok(n) => (Some(n), None),
                Err(e) => (None, Some(e.to_string())),
            },
        };
        Ok((DeviceLoader { device, nvjpeg, cpu, resample: Resample::default(), stats: Arc::new(DeviceLoaderStats::default()) }, why_not))
    }

    /// The nvJPEG backend in use ("hardware", "default"), or None for the CPU decoder.
    pub fn gpu_backend(&self) -> Option<&'static str> {
        self.nvjpeg.as_ref().map(|n| n.backend)
    }

    fn cpu_decode(&mut self, rec: &Record) -> Result<RgbImage, DecodeError> {
        // A panic in an exotic-format decoder is one more failed record.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.cpu.decode(rec, &DecodeRequest::FULL)))
            .unwrap_or_else(|_| Err(DecodeError::Jpeg("the decoder panicked".into())))
            .map(|d| d.image)
    }

    /// Decodes and augments the samples `indices` into one batch on the device. Records that
    /// fail every decoder are logged with shard and record, counted and left out.
    pub fn make_batch(&mut self, ds: &Dataset, pipeline: &Pipeline, indices: &[u64], number: usize, seed: u64, epoch: u64) -> Batch {
        let t0 = Instant::now();
        let mut skipped = 0usize;
        // 1. Route each record: nvJPEG when its header says the GPU takes it, else decode now.
        let mut pending: Vec<Pending> = Vec::with_capacity(indices.len());
        for &index in indices {
            let rec = match ds.get(index) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(index, error = %e, "skipping unreadable record");
                    skipped += 1;
                    continue;
                }
            };
            let gpu_size = match (&self.nvjpeg, rec.content_type) {
                (Some(nv), ContentType::Jpeg) => nv.info(rec.bytes).ok().filter(|i| i.gpu_decodable() && i.width > 0 && i.height > 0).map(|i| (i.width, i.height)),
                _ => None,
            };
            match gpu_size {
                Some(size) => pending.push(Pending { index, rec, size, host: None }),
                None => match self.cpu_decode(&rec) {
                    Ok(img) => pending.push(Pending { index, size: (img.width, img.height), rec, host: Some(img) }),
                    Err(e) => {
                        log_undecodable(ds, index, rec.key, &e);
                        skipped += 1;
                    }
                },
            }
        }
        // 2. One device buffer; nvJPEG fills its slots, CPU-decoded images are uploaded; what
        // nvJPEG rejects is decoded on the CPU, and what no decoder reads is left out.
        let sizes: Vec<(u32, u32)> = pending.iter().map(|p| p.size).collect();
        let pixels = batch_buffer(&sizes, self.device);
        let mut keep = vec![true; pending.len()];
        if let Some(nv) = &mut self.nvjpeg {
            let jpegs: Vec<(usize, &[u8])> = (0..pending.len()).filter(|&k| pending[k].host.is_none()).map(|k| (k, pending[k].rec.bytes)).collect();
            let results = nv.decode_into(&jpegs, &pixels);
            self.stats.gpu_decoded.fetch_add(results.iter().filter(|r| r.is_ok()).count() as u64, Ordering::Relaxed);
            for ((k, _), r) in jpegs.iter().zip(results) {
                let Err(e) = r else { continue };
                let p = &pending[*k];
                tracing::debug!(key = p.rec.key, error = %e, "nvJPEG rejected a record; decoding it on the CPU");
                match self.cpu_decode(&p.rec) {
                    Ok(img) if (img.width, img.height) == p.size => pending[*k].host = Some(img),
                    Ok(img) => {
                        let why = format!("decoded {}x{}, header says {}x{}", img.width, img.height, p.size.0, p.size.1);
                        log_undecodable(ds, p.index, p.rec.key, &why);
                        keep[*k] = false;
                    }
                    Err(e) => {
                        log_undecodable(ds, p.index, p.rec.key, &e);
                        keep[*k] = false;
                    }
                }
            }
        }
        for (k, p) in pending.iter().enumerate() {
            if let (true, Some(img)) = (keep[k], &p.host) {
                let hwc = Tensor::from_slice(&img.pixels).view([img.height as i64, img.width as i64, 3]).permute([2, 0, 1]);
                pixels.get(k as i64).narrow(1, 0, img.height as i64).narrow(2, 0, img.width as i64).copy_(&hwc.to_device(self.device));
                self.stats.cpu_decoded.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (pixels, pending) = if keep.contains(&false) {
            skipped += keep.iter().filter(|&&k| !k).count();
            let alive: Vec<i64> = (0..keep.len()).filter(|&k| keep[k]).map(|k| k as i64).collect();
            let pending: Vec<Pending> = pending.into_iter().zip(&keep).filter(|(_, &k)| k).map(|(p, _)| p).collect();
            (pixels.index_select(0, &Tensor::from_slice(&alive).to_device(self.device)), pending)
        } else {
            (pixels, pending)
        };
        let decoded = DecodedBatch { pixels, sizes: pending.iter().map(|p| p.size).collect() };
        let t1 = Instant::now();
        // 3. Every view slot, batched over the samples, from each sample's draws.
        let plans: Vec<SamplePlan> = pending.iter().map(|p| plan_sample(pipeline, p.size.0, p.size.1, seed, epoch, p.index)).collect();
        let mut batch = Batch::empty(pipeline, number, 0);
        if !plans.is_empty() {
            for (slot, vb) in batch.views.iter_mut().enumerate() {
                let spec = &pipeline.views[plans[0].views[slot].spec];
                let slot_plans: Vec<_> = plans.iter().map(|p| &p.views[slot]).collect();
                let x = augment_view(&decoded, &slot_plans, spec, self.resample);
                vb.n = x.size()[0] as usize;
                if spec.rotations {
                    vb.rotation_labels = (0..plans.len()).flat_map(|_| 0..4).collect();
                }
                vb.device = Some(DeviceTensor(x));
            }
        }
        for p in &pending {
            batch.indices.push(p.index);
            batch.ids.push(p.rec.id);
            batch.labels.push(p.rec.label.unwrap_or(-1));
        }
        batch.skipped = skipped;
        let s = &self.stats;
        s.decode_ns.fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
        s.augment_ns.fetch_add(t1.elapsed().as_nanos() as u64, Ordering::Relaxed);
        batch
    }
}

/// One epoch's batches from a [`DeviceLoader`], made on a background thread up to `prefetch`
/// batches ahead of the consumer. Dropping it stops the thread after its current batch.
pub struct DeviceEpochIter {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
}

#[allow(clippy::too_many_arguments)]
pub fn run_device_epoch(loader: Arc<Mutex<DeviceLoader>>, ds: Arc<Dataset>, pipeline: Arc<Pipeline>, indices: Vec<u64>, epoch: u64, batch_size: usize, seed: u64, prefetch: usize) -> DeviceEpochIter {
    let (tx, rx) = sync_channel::<Batch>(prefetch.max(1));
    let handle = std::thread::spawn(move || {
        let mut loader = loader.lock().unwrap_or_else(|e| e.into_inner());
        for (number, chunk) in indices.chunks(batch_size.max(1)).enumerate() {
            let batch = loader.make_batch(&ds, &pipeline, chunk, number, seed, epoch);
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    DeviceEpochIter { rx: Some(rx), handle: Some(handle) }
}

impl Iterator for DeviceEpochIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for DeviceEpochIter {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
