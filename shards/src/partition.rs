//! Sharing a dataset's shards out over ranks.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionMode {
    /// Each rank gets one contiguous range of shards, balanced by record count (PIC's
    /// "cache-mode part": a rank keeps only its part on local disk or in memory).
    Contiguous,
    /// Rank r gets shards r, r + world, r + 2 world, ...
    Interleaved,
}

impl std::str::FromStr for PartitionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "contiguous" => Ok(PartitionMode::Contiguous),
            "interleaved" => Ok(PartitionMode::Interleaved),
            _ => Err(format!("unknown partition mode {s:?} (contiguous | interleaved)")),
        }
    }
}

/// Shard indices for `rank` of `world`, given each shard's record count.
///
/// Contiguous: boundary k is the shard edge nearest to k/world of all records, so every part is
/// within one shard's size of the ideal share. With more ranks than shards some parts are empty.
pub fn partition(counts: &[u64], rank: usize, world: usize, mode: PartitionMode) -> Vec<usize> {
    assert!(world > 0 && rank < world, "rank {rank} out of world {world}");
    match mode {
        PartitionMode::Interleaved => (rank..counts.len()).step_by(world).collect(),
        PartitionMode::Contiguous => contiguous_range(counts, rank, world).collect(),
    }
}

fn contiguous_range(counts: &[u64], rank: usize, world: usize) -> Range<usize> {
    let mut prefix = Vec::with_capacity(counts.len() + 1);
    prefix.push(0u64);
    for c in counts {
        prefix.push(prefix.last().copied().unwrap_or(0) + c);
    }
    let total = *prefix.last().unwrap_or(&0) as u128;
    // Edge k: the index e minimising |prefix[e] - k*total/world|; ties go to the lower edge.
    let edge = |k: usize| -> usize {
        if k == 0 {
            return 0;
        }
        if k == world {
            return counts.len();
        }
        let target = total * k as u128;
        let scaled = |e: usize| prefix[e] as u128 * world as u128;
        let hi = prefix.partition_point(|&p| (p as u128 * world as u128) < target).min(counts.len());
        if hi == 0 {
            return 0;
        }
        let lo = hi - 1;
        if target - scaled(lo) <= scaled(hi).saturating_sub(target) {
            lo
        } else {
            hi
        }
    };
    edge(rank)..edge(rank + 1).max(edge(rank))
}
