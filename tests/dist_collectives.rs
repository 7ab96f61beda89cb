//! c10d collectives across separate processes on 127.0.0.1, 2 and 4 ranks: every check of
//! `silt dist check` (sum/avg/max/min, coalesced, broadcast, all-gather of equal and unequal
//! parts, reduce-scatter, the autograd all-gather and its gradient, the reducer that averages
//! gradients during backward, a sub-group) must hold on
//! every rank; a rank that never arrives gives a clear error within the timeout, not a hang.

mod dist_common;
use dist_common::*;
use std::time::Duration;

fn check_world(world: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut ranks = spawn(world, free_port(), &["dist", "check"], dir.path(), &[]);
    let results = wait_all(&mut ranks, Duration::from_secs(120));
    for (r, (ok, err)) in results.iter().enumerate() {
        assert!(ok, "rank {r} failed:\n{err}");
    }
    for (r, out) in outputs(dir.path(), world).iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("rank {r}: {e}: {out}"));
        assert_eq!(v["rank"], r);
        assert_eq!(v["world"], world);
        assert_eq!(v["launcher"], "Torchrun");
        let checks = v["checks"].as_array().unwrap();
        // even ranks also run the sub-group check
        assert_eq!(checks.len(), if r % 2 == 0 { 13 } else { 12 }, "rank {r}: {out}");
        for c in checks {
            assert_eq!(c["ok"], true, "rank {r}: {c}");
        }
        assert_eq!(v["ok"], true);
    }
}

#[test]
fn collectives_are_right_on_two_ranks() {
    check_world(2);
}

#[test]
fn collectives_are_right_on_four_ranks() {
    check_world(4);
}

#[test]
fn a_missing_rank_is_a_clear_error_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // rank 1 of 2 is never started: rank 0 waits for it at the rendezvous, then gives up
    let mut ranks = spawn(1, free_port(), &["dist", "check"], dir.path(), &[("WORLD_SIZE", "2".into()), ("SILT_DIST_TIMEOUT_S", "3".into())]);
    let started = std::time::Instant::now();
    let results = wait_all(&mut ranks, Duration::from_secs(60));
    assert!(!results[0].0, "rank 0 must fail");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let err = &results[0].1;
    assert!(err.contains("rank 0/2") && err.contains("could not join"), "{err}");
}
