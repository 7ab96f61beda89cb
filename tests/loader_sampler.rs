//! Samplers: coverage, disjointness, determinism, resume (same and changed world size).

use silt::loader::sampler::{Sampler, SamplerKind, SamplerState};
use std::collections::{BTreeMap, BTreeSet};

fn kinds(n: u64) -> Vec<(&'static str, SamplerKind)> {
    // Uneven shards so partitions are uneven.
    let mut shard_counts = vec![];
    let mut left = n;
    let mut k = 7;
    while left > 0 {
        let c = k.min(left);
        shard_counts.push(c);
        left -= c;
        k = k % 13 + 5;
    }
    vec![("sequential", SamplerKind::Sequential), ("shuffle", SamplerKind::Shuffle), ("part", SamplerKind::Part { shard_counts })]
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

#[test]
fn every_epoch_covers_the_dataset_once_and_ranks_are_disjoint() {
    let n = 1003;
    for (name, kind) in kinds(n) {
        for world in [1usize, 2, 3, 8] {
            for epoch in 0..3 {
                let mut all = vec![];
                let mut seen = BTreeSet::new();
                for rank in 0..world {
                    let s = Sampler::new(kind.clone(), n, 42, rank, world).unwrap();
                    let mine = s.epoch_indices(epoch);
                    for &i in &mine {
                        assert!(seen.insert(i), "{name}: index {i} on two ranks (world {world}, epoch {epoch})");
                    }
                    all.extend(mine);
                }
                assert_eq!(sorted(all), (0..n).collect::<Vec<_>>(), "{name}: world {world} epoch {epoch} does not cover 0..n");
            }
        }
    }
}

#[test]
fn orders_are_deterministic_and_change_with_epoch_and_seed() {
    let n = 500;
    for (name, kind) in kinds(n) {
        let a = Sampler::new(kind.clone(), n, 7, 1, 4).unwrap();
        let b = Sampler::new(kind.clone(), n, 7, 1, 4).unwrap();
        assert_eq!(a.epoch_indices(3), b.epoch_indices(3), "{name}");
        if name != "sequential" {
            assert_ne!(a.epoch_indices(3), a.epoch_indices(4), "{name}: epochs should differ");
            let c = Sampler::new(kind.clone(), n, 8, 1, 4).unwrap();
            assert_ne!(a.epoch_indices(3), c.epoch_indices(3), "{name}: seeds should differ");
        }
    }
}

#[test]
fn part_mode_ranks_read_only_their_own_contiguous_shards() {
    let counts = vec![100u64, 80, 120, 90, 110, 100];
    let n: u64 = counts.iter().sum();
    let starts: Vec<u64> = counts.iter().scan(0, |a, c| { let s = *a; *a += c; Some(s) }).collect();
    let shard_of = |i: u64| starts.iter().rposition(|&s| s <= i).unwrap();
    for world in [2usize, 3] {
        for rank in 0..world {
            let s = Sampler::new(SamplerKind::Part { shard_counts: counts.clone() }, n, 1, rank, world).unwrap();
            let e0: BTreeSet<usize> = s.epoch_indices(0).iter().map(|&i| shard_of(i)).collect();
            let e5: BTreeSet<usize> = s.epoch_indices(5).iter().map(|&i| shard_of(i)).collect();
            assert_eq!(e0, e5, "a rank's shard set must not change between epochs");
            let v: Vec<usize> = e0.into_iter().collect();
            assert!(v.windows(2).all(|w| w[1] == w[0] + 1), "rank {rank}/{world} shards {v:?} are not contiguous");
            assert_eq!(v, silt_shards::partition(&counts, rank, world, silt_shards::PartitionMode::Contiguous));
        }
    }
}

/// Simulates a run that stops after `consumed` samples per rank of `epoch`, then resumes with
/// `new_world` ranks: the resumed epoch must contain exactly the samples not yet read.
fn check_resume(kind: &SamplerKind, n: u64, old_world: usize, new_world: usize, epoch: u64, consumed: u64) {
    let seed = 99;
    let mut read = vec![];
    for rank in 0..old_world {
        let s = Sampler::new(kind.clone(), n, seed, rank, old_world).unwrap();
        let mine = s.epoch_indices(epoch);
        read.extend(mine.iter().take(consumed as usize).copied());
    }
    let state = Sampler::new(kind.clone(), n, seed, 0, old_world).unwrap().state(epoch, consumed);
    // The state survives a round trip through JSON (it goes into checkpoints).
    let json = serde_json::to_string(&state).unwrap();
    let state: SamplerState = serde_json::from_str(&json).unwrap();
    let mut rest = vec![];
    for rank in 0..new_world {
        let s = Sampler::new(kind.clone(), n, seed, rank, new_world).unwrap();
        rest.extend(s.resume(&state).unwrap());
    }
    let full: Vec<u64> = (0..old_world)
        .flat_map(|r| Sampler::new(kind.clone(), n, seed, r, old_world).unwrap().epoch_indices(epoch))
        .collect();
    let mut got = read.clone();
    got.extend(&rest);
    let count = |v: &[u64]| v.iter().fold(BTreeMap::new(), |mut m, &i| { *m.entry(i).or_insert(0usize) += 1; m });
    assert_eq!(count(&got), count(&full), "resume {old_world}->{new_world} after {consumed}: duplicates or misses");
    let read_set: BTreeSet<u64> = read.iter().copied().collect();
    if count(&full).values().all(|&c| c == 1) {
        assert!(rest.iter().all(|i| !read_set.contains(i)), "resumed stream repeats an already-read sample");
    }
}

#[test]
fn resume_gives_exactly_the_remaining_samples_also_elastic() {
    let n = 997;
    let labels: Vec<i64> = (0..n).map(|i| if i % 17 == 0 { -1 } else { (i * 7 % 23) as i64 }).collect();
    let mut all_kinds = kinds(n);
    all_kinds.push(("uniform", SamplerKind::UniformOverLabels { labels, reassign: 1.0 }));
    all_kinds.push(("window", SamplerKind::SlidingWindow { window: 400, stride: 100 }));
    for (_, kind) in &all_kinds {
        for (old, new) in [(1usize, 1usize), (4, 4), (4, 2), (2, 5), (3, 8), (8, 3)] {
            for consumed in [0u64, 1, 37, 100, 2000] {
                check_resume(kind, n, old, new, 2, consumed);
            }
        }
    }
}

#[test]
fn resume_refuses_another_seed() {
    let s = Sampler::new(SamplerKind::Shuffle, 10, 1, 0, 1).unwrap();
    let mut st = s.state(0, 3);
    st.seed = 2;
    assert!(s.resume(&st).is_err());
}

#[test]
fn uniform_over_pseudo_labels_draws_equally_from_non_empty_clusters() {
    let n = 1200u64;
    // Cluster 0 huge, cluster 1 tiny, cluster 2 medium, cluster 5 singleton, rest unlabelled.
    let labels: Vec<i64> = (0..n)
        .map(|i| match i {
            0..=899 => 0,
            900..=909 => 1,
            910..=1099 => 2,
            1100 => 5,
            _ => -1,
        })
        .collect();
    let s = Sampler::new(SamplerKind::UniformOverLabels { labels: labels.clone(), reassign: 1.0 }, n, 3, 0, 1).unwrap();
    let e = s.epoch_indices(0);
    assert_eq!(e.len(), n as usize, "N = reassign * len(dataset)");
    let mut per: BTreeMap<i64, usize> = BTreeMap::new();
    for &i in &e {
        let l = labels[i as usize];
        assert!(l >= 0, "unlabelled record {i} drawn");
        *per.entry(l).or_default() += 1;
    }
    assert_eq!(per.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 5]);
    // per = int(1200 / 4) + 1 = 301 each, cut to 1200: every cluster gets 297..=301.
    for (&l, &c) in &per {
        assert!((297..=301).contains(&c), "cluster {l} got {c}");
    }
    // The big cluster is sampled without replacement.
    let big: BTreeSet<u64> = e.iter().copied().filter(|&i| labels[i as usize] == 0).collect();
    assert_eq!(big.len(), per[&0]);
    assert_ne!(e, s.epoch_indices(1));
}

#[test]
fn sliding_window_moves_by_stride_and_visits_every_sample() {
    let n = 1000u64;
    let world = 2;
    let (window, stride) = (400u64, 100u64);
    for rank in 0..world {
        let s = Sampler::new(SamplerKind::SlidingWindow { window, stride }, n, 5, rank, world).unwrap();
        let own: BTreeSet<u64> = (rank as u64..n).step_by(world).collect();
        let mut seen = BTreeSet::new();
        let mut prev: Option<BTreeSet<u64>> = None;
        for epoch in 0..5 {
            let w = s.epoch_indices(epoch);
            assert_eq!(w.len(), (window / world as u64) as usize);
            let set: BTreeSet<u64> = w.iter().copied().collect();
            assert_eq!(set.len(), w.len(), "no repeats inside a window within one permutation cycle");
            assert!(set.is_subset(&own), "rank {rank} reads only i = rank mod world");
            if let Some(p) = &prev {
                // Consecutive windows overlap by window - stride (per rank: 150 of 200).
                assert_eq!(p.intersection(&set).count(), ((window - stride) / world as u64) as usize);
            }
            seen.extend(set.iter().copied());
            prev = Some(set);
        }
        // Per rank: window 200, stride 50; 5 windows cover chain positions 0..400 of the first
        // permutation of this rank's 500 samples.
        assert_eq!(seen.len(), 400);
        let ten: BTreeSet<u64> = (0..10).flat_map(|e| s.epoch_indices(e)).collect();
        assert_eq!(ten, own, "after len/stride windows every own sample was visited");
    }
}
