//! What an earlier, interrupted run of the same command already finished.
//!
//! An item is done when its record is in a published shard, when it is in `quarantine.jsonl`
//! for a reason of its own (not `fetch-failed`: a download that failed because the network or
//! the server was down is tried again), or when it is in `duplicates.jsonl` *and* the record it
//! duplicates is published. Everything else is processed again, so a record that sat
//! in an unpublished shard at the moment of the kill is neither lost nor written twice.
//!
//! With `--dedup perceptual` the pHashes of the published records come from `phashes.jsonl`
//! (written as records are kept, so nothing is decoded again); a published record missing from
//! it (the log lost its tail in a machine crash) is hashed again from its stored bytes.

use crate::dedup::{self, Dedup};
use crate::error::Result;
use crate::phash::{PerceptualIndex, PhashEntry, PHASH_FILE};
use crate::quarantine::{self, DuplicateEntry, QuarantineEntry, Reason, DUPLICATES_FILE, QUARANTINE_FILE};
use silt_shards::Dataset;
use std::collections::{HashMap, HashSet};
use std::path::Path;

#[derive(Default)]
pub struct ResumeState {
    /// Item indices with nothing left to do.
    pub done: HashSet<u64>,
    /// Content hashes of the published records (so later duplicates of them are caught).
    pub dedup: Dedup,
    /// pHashes of the published records, with `--dedup perceptual`.
    pub perceptual: Option<PerceptualIndex>,
    pub published_records: u64,
    pub quarantined: u64,
    pub duplicates: u64,
}

impl ResumeState {
    /// Reads the published shards and the logs in `dir`, and rewrites the logs without entries
    /// that no longer hold (duplicates of records that were lost with an unpublished shard).
    /// `hash` is false when dedup is off (then payloads are not read); `perceptual` is
    /// `--dedup perceptual`'s threshold (`max_pixels` bounds re-hashing a record).
    pub fn load(dir: &Path, hash: bool, perceptual: Option<u32>, max_pixels: u64) -> Result<Self> {
        let dataset = Dataset::open(dir)?;
        let mut st = ResumeState::default();
        let ppath = dir.join(PHASH_FILE);
        let logged: Option<HashMap<u64, u64>> = match perceptual {
            Some(_) => Some(
                quarantine::load::<PhashEntry>(&ppath)?.into_iter().filter_map(|e| Some((e.index, e.hash()?))).collect(),
            ),
            None => None,
        };
        let per_shard = hash_shards(&dataset, hash, logged.as_ref(), max_pixels)?;
        let mut phashes: Vec<(u64, u64)> = Vec::new();
        for (ids, hashes, rehashed) in per_shard {
            for (i, id) in ids.iter().enumerate() {
                st.done.insert(*id);
                if let Some(h) = hashes.get(i) {
                    st.dedup.insert(*h, *id);
                }
                if let Some(p) = logged.as_ref().and_then(|l| l.get(id)) {
                    phashes.push((*id, *p));
                }
            }
            phashes.extend(rehashed);
            st.published_records += ids.len() as u64;
        }
        if let Some(threshold) = perceptual {
            phashes.sort_unstable();
            let mut index = PerceptualIndex::new(threshold);
            for &(id, h) in &phashes {
                index.insert(h, id);
            }
            let entries: Vec<PhashEntry> = phashes.iter().map(|&(id, h)| PhashEntry::new(id, h)).collect();
            quarantine::rewrite(&ppath, &entries)?;
            st.perceptual = Some(index);
        }

        let qpath = dir.join(QUARANTINE_FILE);
        let mut quarantined: Vec<QuarantineEntry> = quarantine::load(&qpath)?;
        quarantined.retain(|q| q.reason != Reason::FetchFailed && st.done.insert(q.index));
        quarantine::rewrite(&qpath, &quarantined)?;
        st.quarantined = quarantined.len() as u64;

        let dpath = dir.join(DUPLICATES_FILE);
        let published: HashSet<u64> = st.done.clone();
        let mut dups: Vec<DuplicateEntry> = quarantine::load(&dpath)?;
        dups.retain(|d| published.contains(&d.of) && st.done.insert(d.index));
        quarantine::rewrite(&dpath, &dups)?;
        st.duplicates = dups.len() as u64;
        Ok(st)
    }
}

/// Per shard: record ids, their content hashes (when hashing), and (id, pHash) of the records
/// that had to be hashed perceptually again.
type ShardIds = (Vec<u64>, Vec<dedup::Hash>, Vec<(u64, u64)>);

/// Ids (and content hashes) of every published record, shards read on all cores. With
/// `logged` (perceptual dedup), records without a logged pHash are hashed from their bytes.
fn hash_shards(dataset: &Dataset, hash: bool, logged: Option<&HashMap<u64, u64>>, max_pixels: u64) -> Result<Vec<ShardIds>> {
    let shards = dataset.shards();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(shards.len().max(1));
    let chunk = shards.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .chunks(chunk)
            .map(|group| {
                s.spawn(move || -> Result<Vec<ShardIds>> {
                    let mut out = Vec::with_capacity(group.len());
                    for shard in group {
                        let mut ids = Vec::with_capacity(shard.len() as usize);
                        let mut hashes = Vec::new();
                        let mut rehashed = Vec::new();
                        for rec in shard.iter() {
                            let rec = rec?;
                            ids.push(rec.id);
                            if hash {
                                hashes.push(dedup::hash(rec.bytes));
                            }
                            if logged.is_some_and(|l| !l.contains_key(&rec.id)) {
                                if let Ok(p) = crate::phash::phash(rec.bytes, rec.content_type, max_pixels) {
                                    rehashed.push((rec.id, p));
                                }
                            }
                        }
                        out.push((ids, hashes, rehashed));
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let part = h.join().map_err(|_| crate::error::Error::Task("shard reader thread panicked".into()))??;
            all.extend(part);
        }
        Ok(all)
    })
}
