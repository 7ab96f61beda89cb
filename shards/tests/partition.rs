//! Partitioning shards over ranks: complete, disjoint, balanced.

use proptest::prelude::*;
use silt_shards::{partition, PartitionMode};

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn parts_cover_everything_once_and_are_balanced(counts in prop::collection::vec(0u64..5000, 0..80), world in 1usize..17) {
        let total: u64 = counts.iter().sum();
        let biggest = counts.iter().copied().max().unwrap_or(0);
        for mode in [PartitionMode::Contiguous, PartitionMode::Interleaved] {
            let mut seen = vec![0u32; counts.len()];
            for rank in 0..world {
                let part = partition(&counts, rank, world, mode);
                for &s in &part {
                    seen[s] += 1;
                }
                if mode == PartitionMode::Contiguous {
                    prop_assert!(part.windows(2).all(|w| w[1] == w[0] + 1), "not contiguous: {:?}", part);
                    let records: u64 = part.iter().map(|&s| counts[s]).sum();
                    let ideal = total as f64 / world as f64;
                    prop_assert!((records as f64 - ideal).abs() <= biggest as f64,
                        "rank {} holds {} records, ideal {:.1}, largest shard {}", rank, records, ideal, biggest);
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "{:?}: some shard is in {:?} parts", mode, seen);
        }
    }
}

#[test]
fn contiguous_parts_follow_rank_order() {
    let counts = [10, 10, 10, 10, 10, 10, 10, 10];
    assert_eq!(partition(&counts, 0, 4, PartitionMode::Contiguous), vec![0, 1]);
    assert_eq!(partition(&counts, 3, 4, PartitionMode::Contiguous), vec![6, 7]);
    assert_eq!(partition(&counts, 1, 3, PartitionMode::Interleaved), vec![1, 4, 7]);
    // Uneven shards: balance by records, not by shard count.
    assert_eq!(partition(&[100, 1, 1, 1, 1, 96], 0, 2, PartitionMode::Contiguous), vec![0]);
}
