//! Crash safety: SIGKILL `silt-ingest` at several moments, re-run the same command, and compare
//! with an uninterrupted run: the same records (0 lost, 0 duplicated), the same quarantine and,
//! with --deterministic, byte-identical shard files.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// PIC's train.zip (637 real photos) fully decoded, in 8-record shards: enough steps to kill in.
fn zip_source(data: &Path) -> Vec<String> {
    let (zip, map) = (data.join("imagenet-zip/train.zip"), data.join("imagenet-zip/train_map.txt"));
    ["zip", "--zip", p(&zip), "--map", p(&map)].iter().map(|s| s.to_string()).collect()
}

fn args(source: &[String], out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = source.to_vec();
    v.extend(["--out", p(out), "--check", "full", "--shard-records", "8"].iter().map(|s| s.to_string()));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn published_shards(out: &Path) -> usize {
    std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m["shards"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

/// Starts an ingest and SIGKILLs it once `shards` shards are published (or at once for 0).
/// Returns false if the run finished before the kill point.
fn run_and_kill(args: &[String], out: &Path, shards: usize) -> bool {
    let mut child = Command::new(bin()).args(args).arg("--quiet").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = published_shards(out);
    if shards == 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ingest failed before the kill point");
            return false;
        }
        if published_shards(out) >= start + shards {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// duplicates.jsonl as sorted (index, of, distance).
fn duplicates(out: &Path) -> Vec<(u64, u64, Option<u64>)> {
    let text = std::fs::read_to_string(out.join("duplicates.jsonl")).unwrap_or_default();
    let mut v: Vec<_> = text
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).expect("duplicate line is JSON");
            (j["index"].as_u64().unwrap(), j["of"].as_u64().unwrap(), j["distance"].as_u64())
        })
        .collect();
    v.sort();
    v
}

fn shard_files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".silt"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

fn kill_resume_compare(source: &[String], extra: &[&str], deterministic: bool) -> serde_json::Value {
    let clean = tempfile::tempdir().unwrap();
    let a: Vec<String> = args(source, clean.path(), extra);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let clean_summary = ingest(&a);

    let crashed = tempfile::tempdir().unwrap();
    let b = args(source, crashed.path(), extra);
    let mut kills = 0;
    // Kill right after start, then after a few more shards each time.
    for shards in [0, 1, 3, 7, 2] {
        if run_and_kill(&b, crashed.path(), shards) {
            kills += 1;
        }
    }
    assert!(kills >= 3, "the kills should land mid-run (got {kills})");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let resumed = ingest(&b);
    assert!(resumed["resumed_items"].as_u64().unwrap() > 0, "{resumed}");

    for key in ["records", "quarantined", "duplicates"] {
        assert_eq!(resumed[key], clean_summary[key], "{key}: {resumed} vs {clean_summary}");
    }
    assert_eq!(contents(crashed.path()), contents(clean.path()), "same records: nothing lost, nothing duplicated");
    assert_eq!(quarantine(crashed.path()), quarantine(clean.path()));
    assert_eq!(duplicates(crashed.path()), duplicates(clean.path()), "same duplicate entries");
    if deterministic {
        let (x, y) = (shard_files(crashed.path()), shard_files(clean.path()));
        assert_eq!(x.len(), y.len());
        for ((nx, bx), (ny, by)) in x.iter().zip(&y) {
            assert_eq!(nx, ny);
            assert!(bx == by, "{nx} differs from the uninterrupted run");
        }
    }
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(crashed.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".rejected"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    clean_summary
}

#[test]
fn kill_and_resume_deterministic_gives_identical_shards() {
    let s = kill_resume_compare(&zip_source(&data_dir()), &["--deterministic"], true);
    assert_eq!(s["records"], 637, "{s}");
}

#[test]
fn kill_and_resume_with_parallel_writers_loses_and_duplicates_nothing() {
    let s = kill_resume_compare(&zip_source(&data_dir()), &["--writers", "3"], false);
    assert_eq!(s["records"], 637, "{s}");
}

/// The dirty YFCC list plus 40 rows repeating earlier photos (and 2 repeating bad rows), so
/// kills land between records, quarantine entries and duplicate entries.
#[test]
fn kill_and_resume_keeps_quarantine_and_duplicates_consistent() {
    let data = data_dir();
    let list_dir = tempfile::tempdir().unwrap();
    let list = list_dir.path().join("list.tsv");
    let dirty = std::fs::read_to_string(data.join("yfcc/yfcc100m_dataset_dirty.tsv")).unwrap();
    let rows: Vec<&str> = dirty.lines().collect();
    let mut text = dirty.clone();
    for row in rows.iter().step_by(17).take(40).chain(rows.iter().rev().take(2)) {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(&list, text).unwrap();
    let url = format!("file://{}/", data.join("yfcc").canonicalize().unwrap().display());
    let source: Vec<String> = ["yfcc", "--list", p(&list), "--source", &url, "--key-template", "{download_url}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = kill_resume_compare(&source, &["--deterministic"], true);
    assert_eq!(s["records"], 702, "{s}");
    assert_eq!(s["duplicates"], 40, "{s}");
    assert!(s["quarantined"].as_u64().unwrap() >= 5 + 2, "{s}");
}

#[test]
fn resuming_with_a_different_command_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let a = args(&zip_source(&data_dir()), out.path(), &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    ingest(&a);
    let mut b = a.clone();
    b.extend(["--max-pixels", "1000"]);
    let res = ingest_output(&b);
    assert!(!res.status.success());
    assert!(String::from_utf8_lossy(&res.stderr).contains("different ingest command"), "{}", String::from_utf8_lossy(&res.stderr));
}

/// The IDX source (first 2000 MNIST training digits, 8 per shard) through kills and resumes.
#[test]
fn kill_and_resume_idx_source_gives_identical_shards() {
    let mnist = data_dir().join("mnist");
    let (i, l, c) = (mnist.join("train-images-idx3-ubyte"), mnist.join("train-labels-idx1-ubyte"), mnist.join("classes.txt"));
    let source: Vec<String> =
        ["idx", "--images", p(&i), "--labels", p(&l), "--classes", p(&c), "--limit", "2000"].iter().map(|s| s.to_string()).collect();
    let s = kill_resume_compare(&source, &["--deterministic"], true);
    assert_eq!(s["records"], 2000, "{s}");
}

/// The real photos with --dedup perceptual: the kept set and every duplicate entry (with its
/// `of` and distance) equal an uninterrupted run's, with parallel writers.
#[test]
fn kill_and_resume_with_perceptual_dedup_keeps_the_same_records_and_duplicates() {
    let photos = data_dir().join("photos");
    let source: Vec<String> = ["folder", p(&photos)].iter().map(|s| s.to_string()).collect();
    let s = kill_resume_compare(&source, &["--dedup", "perceptual", "--writers", "3"], false);
    assert!(s["duplicates"].as_u64().unwrap() >= 10, "{s}");
}

/// A lost `phashes.jsonl` (say a machine crash ate it) is rebuilt from the published records.
#[test]
fn perceptual_resume_rebuilds_a_lost_phash_log_from_the_shards() {
    let photos = data_dir().join("photos");
    let source: Vec<String> = ["folder", p(&photos)].iter().map(|s| s.to_string()).collect();
    let extra = ["--dedup", "perceptual", "--deterministic"];
    let clean = tempfile::tempdir().unwrap();
    let a = args(&source, clean.path(), &extra);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let clean_summary = ingest(&a);

    let crashed = tempfile::tempdir().unwrap();
    let b = args(&source, crashed.path(), &extra);
    assert!(run_and_kill(&b, crashed.path(), 20), "the kill should land mid-run");
    let log = crashed.path().join("phashes.jsonl");
    let logged = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(logged >= 20 * 8, "{logged} pHashes logged");
    std::fs::remove_file(&log).unwrap();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let resumed = ingest(&b);
    assert!(resumed["resumed_items"].as_u64().unwrap() >= 160, "{resumed}");
    assert_eq!(contents(crashed.path()), contents(clean.path()));
    assert_eq!(duplicates(crashed.path()), duplicates(clean.path()));
    assert_eq!(shard_files(crashed.path()), shard_files(clean.path()));
    assert_eq!(resumed["duplicates"], clean_summary["duplicates"]);
    // The rebuilt log holds one pHash per record, equal to the uninterrupted run's.
    let read = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_to_string(d.join("phashes.jsonl")).unwrap().lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(read(crashed.path()), read(clean.path()));
}
