//! What an earlier, interrupted run of the same command already finished.
//!
//! An item is done when its record is in a published shard, when it is in `quarantine.jsonl`
//! for a reason of its own (not `fetch-failed`: a download that failed because the network or
//! the server was down is tried again), or when it is in `duplicates.jsonl` *and* the record it
//! duplicates is published. Everything else is processed again, so a record that sat
//! in an unpublished shard at the moment of the kill is neither lost nor written twice.

use crate::dedup::{self, Dedup};
use crate::error::Result;
use crate::quarantine::{self, DuplicateEntry, QuarantineEntry, Reason, DUPLICATES_FILE, QUARANTINE_FILE};
use silt_shards::Dataset;
use std::collections::HashSet;
use std::path::Path;

#[derive(Default)]
pub struct ResumeState {
    /// Item indices with nothing left to do.
    pub done: HashSet<u64>,
    /// Content hashes of the published records (so later duplicates of them are caught).
    pub dedup: Dedup,
    pub published_records: u64,
    pub quarantined: u64,
    pub duplicates: u64,
}

impl ResumeState {
    /// Reads the published shards and the logs in `dir`, and rewrites the logs without entries
    /// that no longer hold (duplicates of records that were lost with an unpublished shard).
    /// `hash` is false when dedup is off (then payloads are not read).
    pub fn load(dir: &Path, hash: bool) -> Result<Self> {
        let dataset = Dataset::open(dir)?;
        let mut st = ResumeState::default();
        let per_shard = hash_shards(&dataset, hash)?;
        for (ids, hashes) in per_shard {
            for (i, id) in ids.iter().enumerate() {
                st.done.insert(*id);
                if let Some(h) = hashes.get(i) {
                    st.dedup.check(*h, *id);
                }
            }
            st.published_records += ids.len() as u64;
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

type ShardIds = (Vec<u64>, Vec<dedup::Hash>);

/// Ids (and content hashes) of every published record, shards read on all cores.
fn hash_shards(dataset: &Dataset, hash: bool) -> Result<Vec<ShardIds>> {
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
                        for rec in shard.iter() {
                            let rec = rec?;
                            ids.push(rec.id);
                            if hash {
                                hashes.push(dedup::hash(rec.bytes));
                            }
                        }
                        out.push((ids, hashes));
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
