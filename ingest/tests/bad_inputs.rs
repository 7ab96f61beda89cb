//! The bad-input corpus (Pillow's Tests/images, Go's image testdata, files derived from a real
//! photo: cut, zeroed, bit-flipped, a 65500x65500 SOF ...): the run finishes, every item is
//! accounted for, and every file bad.tsv marks `reject` is quarantined with a reason.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};

fn bad_tsv() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(data_dir().join("bad/bad.tsv")).expect("bad/bad.tsv (ops/get-data --with-bad-inputs)");
    text.lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[2].to_string(), c[3].to_string()) // file, format, expect
        })
        .collect()
}

#[test]
fn bad_corpus_full_check_quarantines_every_reject() {
    let rows = bad_tsv();
    let bad = data_dir().join("bad");
    let out = tempfile::tempdir().unwrap();
    let s = ingest(&["folder", p(&bad), "--out", p(out.path()), "--extensions", "*", "--check", "full"]);
    // bad.tsv itself is listed too (and is not an image).
    let listed = rows.len() as u64 + 1;
    let (records, quarantined, dups) = (s["records"].as_u64().unwrap(), s["quarantined"].as_u64().unwrap(), s["duplicates"].as_u64().unwrap());
    assert_eq!(records + quarantined + dups, listed, "every item is accounted for: {s}");

    let q: BTreeMap<String, String> = quarantine(out.path()).into_iter().map(|(_, k, r)| (k, r)).collect();
    let rejects: Vec<&(String, String, String)> = rows.iter().filter(|r| r.2 == "reject").collect();
    assert_eq!(rejects.len(), 90);
    // Rejects made from real photos, Go's invalid files and the PNGs named .jpg: all caught.
    let (pillow, others): (Vec<&(String, String, String)>, Vec<_>) = rejects.iter().copied().partition(|r| r.0.starts_with("pillow/"));
    let missed: Vec<&String> = others.iter().map(|r| &r.0).filter(|f| !q.contains_key(*f)).collect();
    assert!(missed.is_empty(), "rejects not quarantined: {missed:?}");
    assert_eq!(others.len(), 16, "8 derived from a photo, 5 Go, 3 PNGs named .jpg");
    // Pillow's `reject`s are picked by file name ("broken", "invalid", "bad" ...). The ones kept
    // have broken EXIF/MPO metadata or are BMP-suite oddities whose pixels decode cleanly
    // (djpeg exits 0 on the JPEGs); the crashers, timeouts, OOMs and truncations are caught.
    let kept: Vec<&String> = pillow.iter().map(|r| &r.0).filter(|f| !q.contains_key(*f)).collect();
    eprintln!("pillow name-flagged rejects kept ({} of {}): {kept:?}", kept.len(), pillow.len());
    assert!(kept.len() <= 14, "at least 60 of the 74 are caught: {kept:?}");
    assert!(kept.iter().all(|f| ["exif", "mpo", "bmp__b__", "apng__syntax"].iter().any(|w| f.contains(w))), "{kept:?}");
    assert!(q.values().all(|r| !r.is_empty()));
    assert_eq!(q.get("bad.tsv").map(String::as_str), Some("not-an-image"));
    assert_eq!(q.get("from-photo-packages/opencv__html__board.jpg").map(String::as_str), Some("format-mismatch"));
    assert_eq!(q.get("derived/empty.jpg").map(String::as_str), Some("empty"));

    // Valid edge-case JPEGs (every subsampling, CMYK, progressive, greyscale) are kept.
    let kept_keys: BTreeSet<String> = contents(out.path()).into_values().map(|r| r.0).collect();
    let edge_jpegs: Vec<&String> = rows.iter().filter(|r| r.2 == "valid-edge" && r.1 == "jpeg").map(|r| &r.0).collect();
    assert!(edge_jpegs.len() >= 20);
    let edge: Vec<&String> = rows.iter().filter(|r| r.2 == "valid-edge").map(|r| &r.0).collect();
    let lost: Vec<&&String> = edge.iter().filter(|f| q.contains_key(**f)).collect();
    assert!(lost.is_empty(), "valid edge cases quarantined: {:?}", lost.iter().map(|f| (f, &q[**f])).collect::<Vec<_>>());
    assert!(edge_jpegs.iter().any(|f| kept_keys.contains(*f)));
    eprintln!("bad corpus: {records} records, {quarantined} quarantined, {dups} duplicates; {:?}", reasons(&s));
}

#[test]
fn decompression_bombs_are_stopped_by_max_pixels_before_decoding() {
    let rows = bad_tsv();
    let bad = data_dir().join("bad");
    let out = tempfile::tempdir().unwrap();
    let s = ingest(&["folder", p(&bad), "--out", p(out.path()), "--extensions", "*", "--max-pixels", "20000000"]);
    let q: BTreeMap<String, String> = quarantine(out.path()).into_iter().map(|(_, k, r)| (k, r)).collect();
    // The derived file whose SOF claims 65500x65500 (4.3 gigapixels).
    let sof = rows.iter().find(|r| r.0.contains("derived/") && r.0.contains("65500")).map(|r| r.0.clone());
    if let Some(sof) = sof {
        assert_eq!(q.get(&sof).map(String::as_str), Some("too-many-pixels"), "{sof}");
    }
    assert!(reasons(&s).get("too-many-pixels").copied().unwrap_or(0) >= 1, "{s}");
}

/// The corpus holds decompression bombs and Pillow's OOM files; with --check full, the peak
/// memory of the whole run stays far below what decoding any of them would take.
#[test]
fn memory_stays_bounded_on_the_bad_corpus() {
    let bad = data_dir().join("bad");
    let out = tempfile::tempdir().unwrap();
    // Python's getrusage(RUSAGE_CHILDREN) reports the child's peak RSS (KiB) without extra crates.
    let probe = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); \
                 print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let res = std::process::Command::new("python3")
        .args(["-c", probe, bin(), "folder", p(&bad), "--out", p(out.path()), "--extensions", "*", "--check", "full", "--quiet"])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&res.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (rc, peak_kib) = (it.next().unwrap(), it.next().unwrap());
    assert_eq!(rc, 0);
    eprintln!("peak RSS on the bad corpus: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 1024 * 1024, "peak RSS {peak_kib} KiB >= 1 GiB");
}
