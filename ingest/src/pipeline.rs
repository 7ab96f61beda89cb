//! The ingest pipeline: list -> fetch -> validate -> dedup -> shard writers.
//!
//! ```text
//! source.items()  --(part / resume filter)-->  process: fetch (bounded by --fetch-concurrency,
//!   retries) then validate + hash on the blocking pool (bounded by the cores)
//!   --(buffered: results come back in listing order, at most `window` in flight)-->
//!   dedup (exact, then perceptual) + quarantine log (one task, in listing order)
//!   --(bounded channels)--> N shard-writer threads
//! ```
//!
//! Results are re-sequenced into listing order before dedup, so which copy of duplicated bytes
//! is kept (the first listed) never depends on timing; that makes a resumed run produce the same
//! record set as an uninterrupted one, and `--deterministic` (one writer) the same bytes.

use crate::dedup;
use crate::error::{Error, Result};
use crate::fetch::{fetch_with_retries, RetryPolicy};
use crate::item::{Item, Payload};
use crate::phash::{self, PerceptualIndex, PhashEntry, PHASH_FILE};
use crate::progress::Progress;
use crate::quarantine::{self, DuplicateEntry, JsonlLog, QuarantineEntry, Reason, Rejection, DUPLICATES_FILE, QUARANTINE_FILE};
use crate::resume::ResumeState;
use crate::source::Source;
use crate::summary::Summary;
use crate::transform::{transform, TransformOptions};
use crate::validate::{validate, ImageInfo, ValidateOptions};
use bytes::Bytes;
use futures::StreamExt;
use silt_shards::{DatasetWriter, DatasetWriterOptions, Record, ShardWriter};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

/// `--part i/n`: this run ingests the items whose index is `i` modulo `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    pub index: u64,
    pub count: u64,
}

impl Part {
    pub const WHOLE: Part = Part { index: 0, count: 1 };

    pub fn owns(&self, item_index: u64) -> bool {
        item_index % self.count == self.index
    }
}

impl std::str::FromStr for Part {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/4")?;
        let index: u64 = i.trim().parse().map_err(|_| format!("{i:?} is not a part number"))?;
        let count: u64 = n.trim().parse().map_err(|_| format!("{n:?} is not a part count"))?;
        if count == 0 || index >= count {
            return Err(format!("part {index}/{count}: need 0 <= i < n"));
        }
        Ok(Part { index, count })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Output dataset directory (manifest, shards, quarantine.jsonl, duplicates.jsonl).
    pub out: PathBuf,
    pub fetch_concurrency: usize,
    /// Threads for validation (and re-encoding): the cores by default.
    pub cpu_threads: usize,
    pub retry: RetryPolicy,
    pub validate: ValidateOptions,
    /// Larger inputs are quarantined unread.
    pub max_bytes: u64,
    pub shard_bytes: u64,
    pub shard_records: Option<u64>,
    /// Parallel shard writers (1 with `deterministic`).
    pub writers: usize,
    /// One writer, records in listing order: shard bytes identical across runs and resumes.
    pub deterministic: bool,
    pub part: Part,
    /// Exact dedup (BLAKE3 of the bytes).
    pub dedup: bool,
    /// Perceptual dedup too: pHashes within this many bits of a kept record's are duplicates.
    pub perceptual: Option<u32>,
    pub progress: bool,
    /// Stop the run when this many fetches in a row fail after their retries.
    pub max_consecutive_failures: u64,
    /// Resize + re-encode large images (off when `None`).
    pub transform: Option<TransformOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            out: PathBuf::from("out"),
            fetch_concurrency: 64,
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            retry: RetryPolicy::default(),
            validate: ValidateOptions::default(),
            max_bytes: 64 << 20,
            shard_bytes: 256 << 20,
            shard_records: None,
            writers: 2,
            deterministic: false,
            part: Part::WHOLE,
            dedup: true,
            perceptual: None,
            progress: true,
            max_consecutive_failures: 100,
            transform: None,
        }
    }
}

impl Options {
    /// The settings that decide which records a run produces; a resumed run must match them.
    fn recipe(&self, source: &dyn Source) -> serde_json::Value {
        let mut r = serde_json::json!({
            "source": source.describe(),
            "part": self.part,
            "check": self.validate.check,
            "max_pixels": self.validate.max_pixels,
            "allow_format_mismatch": self.validate.allow_format_mismatch,
            "max_bytes": self.max_bytes,
            "dedup": self.dedup,
            "deterministic": self.deterministic,
        });
        if let Some(t) = self.perceptual {
            r["perceptual_threshold"] = t.into();
        }
        if let Some(t) = self.transform {
            if let Some(n) = t.resize_shorter {
                r["resize_shorter"] = n.into();
                r["quality"] = t.quality.into();
            }
            if t.raw {
                r["store_raw"] = true.into();
            }
        }
        if self.deterministic {
            r["shard_bytes"] = self.shard_bytes.into();
            r["shard_records"] = self.shard_records.into();
        }
        r
    }

    fn shard_prefix(&self) -> String {
        if self.part.count == 1 {
            "shard".into()
        } else {
            format!("part{:05}of{:05}", self.part.index, self.part.count)
        }
    }
}

/// A validated image on its way to a shard writer.
struct Packed {
    index: u64,
    key: String,
    label: Option<i64>,
    info: ImageInfo,
    bytes: Bytes,
}

enum Outcome {
    /// With the content hash, and the pHash when perceptual dedup is on and the image decodes.
    Accepted(Packed, dedup::Hash, Option<u64>),
    Rejected { index: u64, key: String, rejection: Rejection },
}

struct Ctx {
    fetch_permits: Semaphore,
    /// Fetches that failed after all retries since the last success.
    failures_in_a_row: std::sync::atomic::AtomicU64,
    max_consecutive_failures: u64,
    cpu_permits: Semaphore,
    retry: RetryPolicy,
    validate: ValidateOptions,
    transform: Option<TransformOptions>,
    max_bytes: u64,
    perceptual: bool,
}

/// Runs the whole ingest of `source` into `opts.out`, resuming whatever an earlier run of the
/// same command left there.
pub async fn run(source: Arc<dyn Source>, opts: &Options) -> Result<Summary> {
    let started = Instant::now();
    let writer_opts = DatasetWriterOptions {
        target_shard_bytes: opts.shard_bytes,
        max_records_per_shard: opts.shard_records,
        prefix: opts.shard_prefix(),
    };
    let out = opts.out.clone();
    let (dataset, recovery) = tokio::task::spawn_blocking(move || DatasetWriter::open(out, writer_opts))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    if recovery != Default::default() {
        tracing::info!(?recovery, "recovered after an interrupted run");
    }
    let recipe = opts.recipe(source.as_ref());
    claim_dataset(&dataset, &recipe, source.classes())?;

    let (out, dedup_on, perceptual, max_pixels) = (opts.out.clone(), opts.dedup, opts.perceptual, opts.validate.max_pixels);
    let resume = tokio::task::spawn_blocking(move || ResumeState::load(&out, dedup_on, perceptual, max_pixels))
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
    if !resume.done.is_empty() {
        tracing::info!(done = resume.done.len(), records = resume.published_records, "resuming");
    }
    let ResumeState { done, dedup: mut dedup_state, perceptual: mut perceptual_index, .. } = resume;
    if let (Some(t), None) = (opts.perceptual, &perceptual_index) {
        perceptual_index = Some(PerceptualIndex::new(t));
    }
    let done = Arc::new(done);

    let mut quarantine_log = JsonlLog::open_append(opts.out.join(QUARANTINE_FILE))?;
    let mut duplicate_log = JsonlLog::open_append(opts.out.join(DUPLICATES_FILE))?;
    let mut phash_log = match opts.perceptual {
        Some(_) => Some(JsonlLog::open_append(opts.out.join(PHASH_FILE))?),
        None => None,
    };

    let total = source.len_hint().map(|n| n.div_ceil(opts.part.count));
    let progress = Progress::start(total, opts.progress);
    let counters = progress.counters.clone();

    let writers = if opts.deterministic { 1 } else { opts.writers.max(1) };
    let (senders, handles) = start_writers(&dataset, writers);

    let ctx = Arc::new(Ctx {
        fetch_permits: Semaphore::new(opts.fetch_concurrency.max(1)),
        failures_in_a_row: Default::default(),
        max_consecutive_failures: opts.max_consecutive_failures.max(1),
        cpu_permits: Semaphore::new(opts.cpu_threads.max(1)),
        retry: opts.retry,
        validate: opts.validate,
        transform: opts.transform,
        max_bytes: opts.max_bytes,
        perceptual: opts.perceptual.is_some(),
    });
    let window = 2 * (opts.fetch_concurrency + opts.cpu_threads).max(2);
    let part = opts.part;
    let resumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (done_f, resumed_f) = (done.clone(), resumed.clone());
    let mut outcomes = source
        .items()
        .filter(move |r| {
            let keep = match r {
                Ok(item) if !part.owns(item.index) => false,
                Ok(item) if done_f.contains(&item.index) => {
                    resumed_f.fetch_add(1, Ordering::Relaxed);
                    false
                }
                _ => true,
            };
            futures::future::ready(keep)
        })
        .map(|r| {
            let ctx = ctx.clone();
            async move {
                match r {
                    Ok(item) => process(item, &ctx).await,
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(window);

    let mut next_writer = 0;
    let mut failure: Option<Error> = None;
    let mut bytes_this_run = 0u64;
    let mut records_this_run = 0u64;
    while let Some(outcome) = outcomes.next().await {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        counters.items.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Rejected { index, key, rejection } => {
                tracing::debug!(index, key, reason = rejection.reason.as_str(), detail = rejection.detail, "quarantined");
                quarantine_log.append(&QuarantineEntry { index, key, reason: rejection.reason, detail: rejection.detail })?;
                counters.quarantined.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Accepted(packed, hash, phash) => {
                if opts.dedup {
                    if let Some(of) = dedup_state.find(&hash) {
                        duplicate_log.append(&DuplicateEntry { index: packed.index, key: packed.key, of, distance: None })?;
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                if let (Some(index), Some(ph)) = (perceptual_index.as_mut(), phash) {
                    // Only records listed earlier count, as in an uninterrupted run.
                    if let Some((of, d)) = index.find(ph, packed.index) {
                        duplicate_log.append(&DuplicateEntry { index: packed.index, key: packed.key, of, distance: Some(d) })?;
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    index.insert(ph, packed.index);
                    // Logged before the record goes to a writer: resume keeps the entries of
                    // published records and drops the rest.
                    if let Some(log) = phash_log.as_mut() {
                        log.append(&PhashEntry::new(packed.index, ph))?;
                    }
                }
                if opts.dedup {
                    dedup_state.insert(hash, packed.index);
                }
                let n = packed.bytes.len() as u64;
                if senders[next_writer].send(packed).await.is_err() {
                    // The writer thread stopped on an error; joining it below reports it.
                    break;
                }
                next_writer = (next_writer + 1) % senders.len();
                bytes_this_run += n;
                records_this_run += 1;
                counters.records.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
    drop(outcomes);
    drop(senders);
    let writer_result = join_writers(handles).await;
    progress.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    writer_result?;
    quarantine_log.sync()?;
    duplicate_log.sync()?;
    if let Some(log) = &phash_log {
        log.sync()?;
    }
    dataset.update_manifest(|m| {
        m.params.insert("ingest_complete".into(), true.into());
    })?;

    let manifest = dataset.manifest();
    let quarantined: Vec<QuarantineEntry> = quarantine::load(&opts.out.join(QUARANTINE_FILE))?;
    let duplicates: Vec<DuplicateEntry> = quarantine::load(&opts.out.join(DUPLICATES_FILE))?;
    let mut reasons = BTreeMap::new();
    for q in &quarantined {
        *reasons.entry(q.reason.as_str().to_string()).or_insert(0) += 1;
    }
    Ok(Summary {
        records: manifest.records,
        quarantined: quarantined.len() as u64,
        duplicates: duplicates.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
        reasons,
        records_this_run,
        resumed_items: resumed.load(Ordering::Relaxed),
        bytes_this_run,
        shards: manifest.shards.len() as u64,
        out: opts.out.display().to_string(),
    })
}

/// Records this command in the manifest, or refuses a directory made by a different one.
fn claim_dataset(dataset: &DatasetWriter, recipe: &serde_json::Value, classes: Option<Vec<String>>) -> Result<()> {
    let manifest = dataset.manifest();
    match manifest.params.get("ingest") {
        Some(before) if before != recipe => {
            return Err(Error::DifferentCommand { dir: dataset.dir().into(), before: before.to_string(), now: recipe.to_string() })
        }
        None if manifest.records > 0 => {
            return Err(Error::DifferentCommand {
                dir: dataset.dir().into(),
                before: "a dataset not made by silt ingest".into(),
                now: recipe.to_string(),
            })
        }
        _ => {}
    }
    dataset.update_manifest(|m| {
        m.params.insert("ingest".into(), recipe.clone());
        m.params.remove("ingest_complete");
        if classes.is_some() {
            m.classes = classes;
        }
    })?;
    Ok(())
}

/// Fetches one item and checks it. Never fails for a bad item: that is an `Outcome::Rejected`.
async fn process(item: Item, ctx: &Ctx) -> Result<Outcome> {
    let Item { index, key, label, payload } = item;
    let reject = |key, rejection| Ok(Outcome::Rejected { index, key, rejection });
    let bytes = match payload {
        Payload::Rejected(rejection) => return reject(key, rejection),
        Payload::Ready(bytes) if bytes.len() as u64 > ctx.max_bytes => {
            let r = crate::item::FetchError::TooLarge { bytes: bytes.len() as u64, limit: ctx.max_bytes };
            return reject(key, r.into_rejection());
        }
        Payload::Ready(bytes) => bytes,
        Payload::Fetch(f) => {
            let _permit = ctx.fetch_permits.acquire().await.map_err(|e| Error::Task(e.to_string()))?;
            match fetch_with_retries(f.as_ref(), ctx.max_bytes, &ctx.retry).await {
                Ok(b) => {
                    ctx.failures_in_a_row.store(0, Ordering::Relaxed);
                    b
                }
                Err(rejection) if rejection.reason == Reason::FetchFailed => {
                    let failures = ctx.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                    if failures >= ctx.max_consecutive_failures {
                        return Err(Error::SourceUnavailable { failures, last: rejection.detail });
                    }
                    return reject(key, rejection);
                }
                Err(rejection) => return reject(key, rejection),
            }
        }
    };
    let _cpu = ctx.cpu_permits.acquire().await.map_err(|e| Error::Task(e.to_string()))?;
    let (vopts, topts, perceptual) = (ctx.validate, ctx.transform, ctx.perceptual);
    let key_for_check = key.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let info = validate(&key_for_check, &bytes, &vopts)?;
        // Dedup hashes the input bytes, so re-encoding cannot hide or invent duplicates.
        let hash = dedup::hash(&bytes);
        // An image that cannot be hashed (CMYK JPEG, damage past the header with --check
        // header) is kept, with exact dedup only.
        let ph = perceptual
            .then(|| phash::phash(&bytes, info.content_type, vopts.max_pixels))
            .and_then(|r| r.map_err(|e| tracing::debug!(key = key_for_check, error = e, "no perceptual hash")).ok());
        match topts.map(|t| transform(&bytes, &info, &t)).transpose()?.flatten() {
            Some((resized, info)) => Ok::<_, Rejection>((Bytes::from(resized), info, hash, ph)),
            None => Ok((bytes, info, hash, ph)),
        }
    })
    .await
    .map_err(|e| Error::Task(format!("validation task: {e}")))?;
    match checked {
        Ok((bytes, info, hash, ph)) => Ok(Outcome::Accepted(Packed { index, key, label, info, bytes }, hash, ph)),
        Err(rejection) => reject(key, rejection),
    }
}

type WriterHandle = std::thread::JoinHandle<Result<()>>;

fn start_writers(dataset: &DatasetWriter, n: usize) -> (Vec<mpsc::Sender<Packed>>, Vec<WriterHandle>) {
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel::<Packed>(64);
        let writer = dataset.shard_writer();
        senders.push(tx);
        handles.push(std::thread::spawn(move || write_shards(writer, rx)));
    }
    (senders, handles)
}

/// One shard writer on its own thread (shard writes are synchronous file I/O).
fn write_shards(mut writer: ShardWriter, mut rx: mpsc::Receiver<Packed>) -> Result<()> {
    while let Some(p) = rx.blocking_recv() {
        writer.append(&Record {
            id: p.index,
            key: &p.key,
            label: p.label,
            width: p.info.width,
            height: p.info.height,
            content_type: p.info.content_type,
            bytes: &p.bytes,
        })?;
    }
    writer.finish()?;
    Ok(())
}

async fn join_writers(handles: Vec<WriterHandle>) -> Result<()> {
    let mut first_error = None;
    for h in handles {
        let r = tokio::task::spawn_blocking(move || h.join()).await.map_err(|e| Error::Task(e.to_string()))?;
        let r = r.map_err(|_| Error::Task("a shard writer thread panicked".into())).and_then(|r| r);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
