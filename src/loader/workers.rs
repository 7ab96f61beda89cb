//! The worker pool: threads that turn batches of indices into [`Batch`]es, a bounded prefetch
//! window, and delivery in order (batch k is always the same samples, whatever the timing).

use super::batch::Batch;
use super::decode::{CpuDecoder, Decode};
use super::multicrop::{Augmenter, Pipeline, SampleError, StageTimes};
use silt_shards::Dataset;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches decoded ahead of the consumer (beyond the ones being worked on).
    pub prefetch: usize,
    pub seed: u64,
    /// Drop a last, short batch.
    pub drop_last: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig { batch_size: 256, workers: 4, prefetch: 4, seed: 0, drop_last: false }
    }
}

/// Counters shared by the workers (nanoseconds summed over workers).
#[derive(Debug, Default)]
pub struct LoaderStats {
    pub images: AtomicU64,
    pub skipped: AtomicU64,
    pub decode_ns: AtomicU64,
    pub augment_ns: AtomicU64,
    pub assemble_ns: AtomicU64,
}

/// Makes the decoder each worker uses (lets a GPU decoder replace the CPU one).
pub type DecoderFactory = Arc<dyn Fn() -> Box<dyn Decode> + Send + Sync>;

pub fn cpu_decoder_factory(reduce: bool) -> DecoderFactory {
    Arc::new(move || -> Box<dyn Decode> {
        match CpuDecoder::new() {
            Ok(mut d) => {
                d.reduce = reduce;
                Box::new(d)
            }
            Err(e) => Box::new(FailingDecoder(e.to_string())),
        }
    })
}

/// Stands in when a decoder cannot be created: every record fails (and is counted).
struct FailingDecoder(String);
impl Decode for FailingDecoder {
    fn probe(&mut self, _: &silt_shards::Record) -> Result<(u32, u32), super::decode::DecodeError> {
        Err(super::decode::DecodeError::Jpeg(self.0.clone()))
    }
    fn decode(&mut self, _: &silt_shards::Record, _: &super::decode::DecodeRequest) -> Result<super::decode::Decoded, super::decode::DecodeError> {
        Err(super::decode::DecodeError::Jpeg(self.0.clone()))
    }
}

struct Window {
    delivered: Mutex<usize>,
    cv: Condvar,
}

/// One epoch's batches, in order. Dropping it stops the workers.
pub struct EpochIter {
    rx: Option<Receiver<Batch>>,
    pending: BTreeMap<usize, Batch>,
    next: usize,
    total: usize,
    stop: Arc<AtomicBool>,
    window: Arc<Window>,
    handles: Vec<JoinHandle<()>>,
    pub stats: Arc<LoaderStats>,
}

/// Starts the workers on `indices` (one rank's stream for `epoch`).
pub fn run_epoch(ds: Arc<Dataset>, pipeline: Arc<Pipeline>, indices: Vec<u64>, epoch: u64, cfg: &LoaderConfig, decoders: DecoderFactory) -> EpochIter {
    let bs = cfg.batch_size.max(1);
    let mut chunks: Vec<Vec<u64>> = indices.chunks(bs).map(<[u64]>::to_vec).collect();
    if cfg.drop_last && chunks.last().is_some_and(|c| c.len() < bs) {
        chunks.pop();
    }
    let total = chunks.len();
    let chunks = Arc::new(chunks);
    let claim = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(Window { delivered: Mutex::new(0), cv: Condvar::new() });
    let stats = Arc::new(LoaderStats::default());
    let workers = cfg.workers.max(1);
    let ahead = cfg.prefetch + workers;
    let (tx, rx) = sync_channel::<Batch>(ahead);
    let mut handles = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (ds, pipeline, chunks, claim, stop, window, stats, tx, decoders) =
            (ds.clone(), pipeline.clone(), chunks.clone(), claim.clone(), stop.clone(), window.clone(), stats.clone(), tx.clone(), decoders.clone());
        let seed = cfg.seed;
        handles.push(std::thread::spawn(move || {
            let mut aug = Augmenter::new(decoders());
            loop {
                let b = claim.fetch_add(1, Ordering::SeqCst);
                if b >= chunks.len() || stop.load(Ordering::SeqCst) {
                    return;
                }
                // Bounded prefetch: wait until batch b is within `ahead` of the consumer.
                {
                    let mut d = window.delivered.lock().unwrap_or_else(|e| e.into_inner());
                    while b >= *d + ahead && !stop.load(Ordering::SeqCst) {
                        d = window.cv.wait_timeout(d, Duration::from_millis(50)).map(|r| r.0).unwrap_or_else(|e| e.into_inner().0);
                    }
                }
                let batch = make_batch(&ds, &pipeline, &mut aug, &chunks[b], b, seed, epoch, &stats);
                if tx.send(batch).is_err() {
                    return;
                }
            }
        }));
    }
    EpochIter { rx: Some(rx), pending: BTreeMap::new(), next: 0, total, stop, window, handles, stats }
}

/// Decodes and augments one batch; failed records are logged with shard and record, counted,
/// and left out.
#[allow(clippy::too_many_arguments)]
pub fn make_batch(ds: &Dataset, pipeline: &Pipeline, aug: &mut Augmenter, indices: &[u64], number: usize, seed: u64, epoch: u64, stats: &LoaderStats) -> Batch {
    let mut batch = Batch::empty(pipeline, number, indices.len());
    let mut times = StageTimes::default();
    let mut assemble = Duration::ZERO;
    let slots = pipeline.view_slots();
    for &index in indices {
        let rec = match ds.get(index) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(index, error = %e, "skipping unreadable record");
                batch.skipped += 1;
                continue;
            }
        };
        // Decoders for exotic formats can panic on hostile input (e.g. the tiff crate on fuzzed
        // files): a panic is one more failed record, not a dead worker.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| aug.process(pipeline, &rec, seed, epoch, index, &mut times)))
            .unwrap_or_else(|_| Err(SampleError::Panic));
        match result {
            Ok(views) => {
                let t = std::time::Instant::now();
                batch.indices.push(index);
                batch.ids.push(rec.id);
                batch.labels.push(rec.label.unwrap_or(-1));
                for ((vb, data), &(k, _)) in batch.views.iter_mut().zip(views.views).zip(&slots) {
                    let per = pipeline.views[k].images_per_view();
                    vb.data.extend_from_slice(&data);
                    vb.n += per;
                    if pipeline.views[k].rotations {
                        vb.rotation_labels.extend(0..4);
                    }
                }
                assemble += t.elapsed();
            }
            Err(e) => {
                log_undecodable(ds, index, rec.key, &e);
                batch.skipped += 1;
            }
        }
    }
    stats.images.fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.skipped.fetch_add(batch.skipped as u64, Ordering::Relaxed);
    stats.decode_ns.fetch_add(times.decode.as_nanos() as u64, Ordering::Relaxed);
    stats.augment_ns.fetch_add(times.augment.as_nanos() as u64, Ordering::Relaxed);
    stats.assemble_ns.fetch_add(assemble.as_nanos() as u64, Ordering::Relaxed);
    batch
}

/// Logs a record left out of its batch because no decoder could read it, with its shard file
/// and record number.
pub(crate) fn log_undecodable(ds: &Dataset, index: u64, key: &str, error: &dyn std::fmt::Display) {
    let (shard, record) = ds.locate(index).unwrap_or((usize::MAX, index));
    let file = ds.manifest().shards.get(shard).map(|s| s.file.clone()).unwrap_or_default();
    tracing::warn!(shard = %file, record, key, error = %error, "skipping record that failed to decode");
}

impl Iterator for EpochIter {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        loop {
            if let Some(b) = self.pending.remove(&self.next) {
                self.next += 1;
                *self.window.delivered.lock().unwrap_or_else(|e| e.into_inner()) = self.next;
                self.window.cv.notify_all();
                return Some(b);
            }
            match self.rx.as_ref().map(|rx| rx.recv()) {
                Some(Ok(b)) => {
                    self.pending.insert(b.number, b);
                }
                _ => return None,
            }
        }
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.window.cv.notify_all();
        self.rx.take();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
