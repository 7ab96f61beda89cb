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
use silt_shards::{ContentType, Dataset, Record};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::{Device, Tensor};

/// Where JPEGs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
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

/// Counters of the device loader (summed over epochs).
#[derive(Debug, Default)]
pub struct DeviceLoaderStats {
    pub images: AtomicU64,
    pub gpu_decoded: AtomicU64,
    pub cpu_decoded: AtomicU64,
    pub skipped: AtomicU64,
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
    plan: Option<SamplePlan>,
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
        let skip = |ds: &Dataset, index: u64, key: &str, why: &dyn std::fmt::Display| {
            let (shard, record) = ds.locate(index).unwrap_or((usize::MAX, index));
            let file = ds.manifest().shards.get(shard).map(|s| s.file.clone()).unwrap_or_default();
            tracing::warn!(shard = %file, record, key, error = %why, "skipping record that failed to decode");
        };
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
                Some(size) => pending.push(Pending { index, rec, size, host: None, plan: None }),
                None => match self.cpu_decode(&rec) {
                    Ok(img) => pending.push(Pending { index, size: (img.width, img.height), rec, host: Some(img), plan: None }),
                    Err(e) => {
                        skip(ds, index, rec.key, &e);
                        skipped += 1;
                    }
                },
            }
        }
        // 2. One device buffer; nvJPEG fills its slots, CPU-decoded images are uploaded.
        let sizes: Vec<(u32, u32)> = pending.iter().map(|p| p.size).collect();
        let pixels = batch_buffer(&sizes, self.device);
        let gpu_slots: Vec<usize> = (0..pending.len()).filter(|&k| pending[k].host.is_none()).collect();
        if let Some(nv) = &mut self.nvjpeg {
            let jpegs: Vec<(usize, &[u8])> = gpu_slots.iter().map(|&k| (k, pending[k].rec.bytes)).collect();
            let results = nv.decode_into(&jpegs, &pixels);
            self.stats.gpu_decoded.fetch_add(results.iter().filter(|r| r.is_ok()).count() as u64, Ordering::Relaxed);
            for ((k, _), r) in jpegs.iter().zip(results) {
                if let Err(e) = r {
                    tracing::debug!(key = pending[*k].rec.key, error = %e, "nvJPEG rejected a record; decoding it on the CPU");
                    let rec = pending[*k].rec;
                    pending[*k].host = Some(self.cpu_decode(&rec).unwrap_or_default());
                }
            }
        }
        let mut alive = Vec::with_capacity(pending.len());
        for (k, p) in pending.iter_mut().enumerate() {
            if let Some(img) = &p.host {
                if img.width == 0 || img.width != p.size.0 || img.height != p.size.1 {
                    skip(ds, p.index, p.rec.key, &"no decoder could read it");
                    skipped += 1;
                    continue;
                }
                let hwc = Tensor::from_slice(&img.pixels).view([img.height as i64, img.width as i64, 3]).permute([2, 0, 1]);
                pixels.get(k as i64).narrow(1, 0, img.height as i64).narrow(2, 0, img.width as i64).copy_(&hwc.to_device(self.device));
                self.stats.cpu_decoded.fetch_add(1, Ordering::Relaxed);
            }
            p.plan = Some(plan_sample(pipeline, p.size.0, p.size.1, seed, epoch, p.index));
            alive.push(k);
        }
        let (pixels, pending) = if alive.len() < pending.len() {
            let keep = Tensor::from_slice(&alive.iter().map(|&k| k as i64).collect::<Vec<_>>()).to_device(self.device);
            let mut slots: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
            (pixels.index_select(0, &keep), alive.iter().filter_map(|&k| slots[k].take()).collect::<Vec<_>>())
        } else {
            (pixels, pending)
        };
        let decoded = DecodedBatch { pixels, sizes: pending.iter().map(|p| p.size).collect() };
        let t1 = Instant::now();
        // 3. Every view slot, batched over the samples.
        let mut batch = Batch::empty(pipeline, number, 0);
        let plans: Vec<&SamplePlan> = pending.iter().filter_map(|p| p.plan.as_ref()).collect();
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
        s.images.fetch_add(batch.len() as u64, Ordering::Relaxed);
        s.skipped.fetch_add(skipped as u64, Ordering::Relaxed);
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
