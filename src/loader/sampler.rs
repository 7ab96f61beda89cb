//! Samplers: which global record indices each rank reads in each epoch.
//!
//! Every order is a pure function of (kind, seed, epoch, world): nothing is carried from one
//! epoch to the next, so a run can stop anywhere and resume from a [`SamplerState`]. All ranks
//! of a data-parallel job consume their streams in lockstep, so one number (`position`, samples
//! consumed per rank) describes where the epoch stands. Resuming with a different world size
//! (elastic) re-deals the samples the old ranks had not read yet over the new ranks, so the
//! interrupted epoch still sees every sample exactly once; later epochs use the new world's
//! normal layout.

use super::rng::Rng;
use serde::{Deserialize, Serialize};
use silt_shards::{partition, PartitionMode};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplerError {
    #[error("rank {rank} is out of world {world}")]
    BadRank { rank: usize, world: usize },
    #[error("saved state was for seed {saved}, this sampler uses seed {ours}")]
    SeedMismatch { saved: u64, ours: u64 },
    #[error("pseudo-labels cover {labels} records but the dataset has {records}")]
    LabelCount { labels: usize, records: u64 },
    #[error("sliding window needs window >= stride > 0 (window {window}, stride {stride})")]
    BadWindow { window: u64, stride: u64 },
}

/// How the dataset's records are ordered and dealt out.
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerKind {
    /// Records in file order, dealt round-robin (rank r gets r, r+W, ...).
    Sequential,
    /// A fresh global permutation every epoch, dealt round-robin ("cache-mode full": every rank
    /// may read every shard, index sets are disjoint).
    Shuffle,
    /// "cache-mode part": rank r reads only its contiguous range of shards (`shard_counts`
    /// gives each shard's record count) and shuffles inside it every epoch.
    Part { shard_counts: Vec<u64> },
    /// DeepCluster's UnifLabelSampler: `labels[i]` is record i's pseudo-label (negative = none).
    /// Each epoch draws `int(n / m) + 1` records from each of the m non-empty clusters (with
    /// replacement only when the cluster is not larger than that), shuffles, and cuts to
    /// `n = reassign * records`.
    UniformOverLabels { labels: Vec<i64>, reassign: f64 },
    /// PIC's sliding window: each rank walks an endless chain of permutations of its own
    /// indices (those i with i mod W = r); epoch e is the window of `window / W` entries starting
    /// at `e * stride / W`, shuffled.
    SlidingWindow { window: u64, stride: u64 },
}

/// Which records a data-parallel rank reads (PIC's upstream `--cache-mode`): `part` = only its
/// own contiguous range of shards ([`SamplerKind::Part`]; with memory-mapped shards a rank then
/// only ever touches, and keeps in the page cache, its part); `full` / `no` = a global shuffle
/// dealt over the ranks ([`SamplerKind::Shuffle`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    No,
    #[default]
    Full,
    Part,
}

/// Where a run stands: enough to restart it with no duplicate and no missed sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub seed: u64,
    pub epoch: u64,
    /// Samples consumed by each rank in `epoch` (ranks move in lockstep).
    pub position: u64,
    /// World size when the state was saved.
    pub world: usize,
}

#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerKind,
    records: u64,
    seed: u64,
    rank: usize,
    world: usize,
}

impl Sampler {
    pub fn new(kind: SamplerKind, records: u64, seed: u64, rank: usize, world: usize) -> Result<Self, SamplerError> {
        if world == 0 || rank >= world {
            return Err(SamplerError::BadRank { rank, world });
        }
        match &kind {
            SamplerKind::UniformOverLabels { labels, .. } if labels.len() as u64 != records => {
                return Err(SamplerError::LabelCount { labels: labels.len(), records });
            }
            SamplerKind::SlidingWindow { window, stride } if *stride == 0 || window < stride => {
                return Err(SamplerError::BadWindow { window: *window, stride: *stride });
            }
            _ => {}
        }
        Ok(Sampler { kind, records, seed, rank, world })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world(&self) -> usize {
        self.world
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// This rank's indices for `epoch`, in reading order.
    pub fn epoch_indices(&self, epoch: u64) -> Vec<u64> {
        self.stream(epoch, self.rank, self.world)
    }

    /// Every rank's stream for `epoch` under a world of `world` ranks.
    pub fn all_streams(&self, epoch: u64, world: usize) -> Vec<Vec<u64>> {
        match self.global_order(epoch) {
            Some(order) => (0..world).map(|r| deal(&order, r, world)).collect(),
            None => (0..world).map(|r| self.stream(epoch, r, world)).collect(),
        }
    }

    /// The state after this rank has consumed `position` samples of `epoch`.
    pub fn state(&self, epoch: u64, position: u64) -> SamplerState {
        SamplerState { seed: self.seed, epoch, position, world: self.world }
    }

    /// What this rank still has to read in the saved epoch. With the same world size this is
    /// its own stream after `position`; with another world size the samples no old rank had read
    /// are re-dealt round-robin over the new ranks.
    pub fn resume(&self, state: &SamplerState) -> Result<Vec<u64>, SamplerError> {
        if state.seed != self.seed {
            return Err(SamplerError::SeedMismatch { saved: state.seed, ours: self.seed });
        }
        let p = state.position as usize;
        if state.world == self.world {
            let s = self.epoch_indices(state.epoch);
            return Ok(s[p.min(s.len())..].to_vec());
        }
        let old = self.all_streams(state.epoch, state.world);
        let longest = old.iter().map(Vec::len).max().unwrap_or(0);
        let mut remaining = Vec::new();
        for k in p..longest {
            for s in &old {
                if let Some(&i) = s.get(k) {
                    remaining.push(i);
                }
            }
        }
        Ok(deal(&remaining, self.rank, self.world))
    }

    /// For kinds that shuffle one global list and deal it out: that list.
    fn global_order(&self, epoch: u64) -> Option<Vec<u64>> {
        match &self.kind {
            SamplerKind::Sequential => Some((0..self.records).collect()),
            SamplerKind::Shuffle => {
                let mut v: Vec<u64> = (0..self.records).collect();
                Rng::for_stream(&[self.seed, epoch, 0x5A]).shuffle(&mut v);
                Some(v)
            }
            SamplerKind::UniformOverLabels { labels, reassign } => Some(uniform_over_labels(labels, *reassign, self.seed, epoch)),
            SamplerKind::Part { .. } | SamplerKind::SlidingWindow { .. } => None,
        }
    }

    fn stream(&self, epoch: u64, rank: usize, world: usize) -> Vec<u64> {
        if let Some(order) = self.global_order(epoch) {
            return deal(&order, rank, world);
        }
        match &self.kind {
            SamplerKind::Part { shard_counts } => {
                let shards = partition(shard_counts, rank, world, PartitionMode::Contiguous);
                let mut starts = Vec::with_capacity(shard_counts.len() + 1);
                starts.push(0u64);
                for c in shard_counts {
                    starts.push(starts.last().copied().unwrap_or(0) + c);
                }
                let mut v: Vec<u64> = shards.iter().flat_map(|&s| starts[s]..starts[s + 1]).collect();
                Rng::for_stream(&[self.seed, epoch, 0x9A, rank as u64, world as u64]).shuffle(&mut v);
                v
            }
            SamplerKind::SlidingWindow { window, stride } => {
                let own: Vec<u64> = (rank as u64..self.records).step_by(world).collect();
                sliding_window(&own, *window / world as u64, *stride / world as u64, self.seed, epoch, rank)
            }
            _ => Vec::new(),
        }
    }
}

/// Rank r's share of a list: entries r, r + W, r + 2W, ...
fn deal(order: &[u64], rank: usize, world: usize) -> Vec<u64> {
    order.iter().skip(rank).step_by(world).copied().collect()
}

/// DeepCluster's UnifLabelSampler for one epoch (DC util.py), deterministic from (seed, epoch).
fn uniform_over_labels(labels: &[i64], reassign: f64, seed: u64, epoch: u64) -> Vec<u64> {
    let n = (reassign * labels.len() as f64) as usize;
    let mut clusters: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
    for (i, &l) in labels.iter().enumerate() {
        if l >= 0 {
            clusters.entry(l).or_default().push(i as u64);
        }
    }
    if clusters.is_empty() || n == 0 {
        return Vec::new();
    }
    let per = n / clusters.len() + 1;
    let mut rng = Rng::for_stream(&[seed, epoch, 0x0C]);
    let mut out = Vec::with_capacity(per * clusters.len());
    for members in clusters.values() {
        if members.len() <= per {
            out.extend((0..per).map(|_| members[rng.below(members.len() as u64) as usize]));
        } else {
            let mut m = members.clone();
            // Partial Fisher-Yates: the first `per` entries become a uniform sample without replacement.
            for i in 0..per {
                let j = i + rng.below((m.len() - i) as u64) as usize;
                m.swap(i, j);
            }
            out.extend_from_slice(&m[..per]);
        }
    }
    rng.shuffle(&mut out);
    if out.len() >= n {
        out.truncate(n);
    } else {
        let head = out.clone();
        out.extend(head.iter().cycle().take(n - head.len()));
    }
    out
}

/// PIC's sliding window over `own` (see `SamplerKind::SlidingWindow`): position p of the endless
/// chain is entry p mod len of permutation number p / len.
fn sliding_window(own: &[u64], window: u64, stride: u64, seed: u64, epoch: u64, rank: usize) -> Vec<u64> {
    let len = own.len() as u64;
    if len == 0 || window == 0 {
        return Vec::new();
    }
    let start = epoch * stride;
    let mut perm_cache: Option<(u64, Vec<u64>)> = None;
    let mut out = Vec::with_capacity(window as usize);
    for p in start..start + window.min(len) {
        let cycle = p / len;
        if perm_cache.as_ref().map(|(c, _)| *c) != Some(cycle) {
            let mut perm = own.to_vec();
            Rng::for_stream(&[seed, cycle, 0x51, rank as u64]).shuffle(&mut perm);
            perm_cache = Some((cycle, perm));
        }
        if let Some((_, perm)) = &perm_cache {
            out.push(perm[(p % len) as usize]);
        }
    }
    Rng::for_stream(&[seed, epoch, 0x52, rank as u64]).shuffle(&mut out);
    out
}
