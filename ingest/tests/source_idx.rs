//! `idx`: the real MNIST / Fashion-MNIST / OpenCV-digits IDX files of `ops/get-data`, and
//! hostile IDX files (truncated, wrong magic, lying headers, mismatched labels).

mod common;
use common::*;
use silt_shards::Dataset;
use std::path::{Path, PathBuf};

/// The raw pixels of image `i` straight from an IDX images file (independent of the source).
fn idx_pixels(file: &[u8], i: usize) -> &[u8] {
    let be = |o: usize| u32::from_be_bytes(file[o..o + 4].try_into().unwrap()) as usize;
    assert_eq!(be(0), 2051);
    let size = be(8) * be(12);
    &file[16 + i * size..16 + (i + 1) * size]
}

fn idx_labels(file: &[u8]) -> &[u8] {
    assert_eq!(u32::from_be_bytes(file[0..4].try_into().unwrap()), 2049);
    &file[8..]
}

fn classes_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_string).collect()
}

/// Ingests a whole t10k set with --check full and checks every record against the IDX files:
/// count, keys, sizes, labels and the decoded pixels. Returns the label histogram.
fn ingest_t10k_and_compare(dir: &Path, stem: &str) -> Vec<u64> {
    let (images, labels, classes) = (dir.join(format!("{stem}-images-idx3-ubyte")), dir.join(format!("{stem}-labels-idx1-ubyte")), dir.join("classes.txt"));
    let out = tempfile::tempdir().unwrap();
    let s = ingest(&["idx", "--images", p(&images), "--labels", p(&labels), "--classes", p(&classes), "--out", p(out.path()), "--check", "full"]);
    let (img_file, lab_file) = (std::fs::read(&images).unwrap(), std::fs::read(&labels).unwrap());
    let want_labels = idx_labels(&lab_file);
    assert_eq!(s["records"], want_labels.len() as u64, "{s}");
    assert_eq!(s["quarantined"], 0, "{s}");
    assert_eq!(s["duplicates"], 0, "{s}");

    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.manifest().classes.as_deref(), Some(classes_of(&classes).as_slice()));
    let mut histogram = vec![0u64; 10];
    let mut seen = 0;
    for shard in ds.shards() {
        for rec in shard.iter() {
            let rec = rec.unwrap();
            let i = rec.id as usize;
            assert_eq!(rec.key, format!("{stem}-images-idx3-ubyte/{i:05}.png"));
            assert_eq!((rec.width, rec.height), (28, 28));
            assert_eq!(rec.label, Some(want_labels[i] as i64));
            histogram[want_labels[i] as usize] += 1;
            let img = image::load_from_memory_with_format(rec.bytes, image::ImageFormat::Png).unwrap();
            assert_eq!(img.color(), image::ColorType::L8);
            assert_eq!(img.into_luma8().as_raw().as_slice(), idx_pixels(&img_file, i), "record {i} decodes to the IDX pixels");
            seen += 1;
        }
    }
    assert_eq!(seen, want_labels.len());
    histogram
}

#[test]
fn fashion_mnist_t10k_whole_set_exact_pixels_and_1000_per_class() {
    let dir = data_dir().join("fashion-mnist");
    if !dir.join("t10k-images-idx3-ubyte").is_file() {
        eprintln!("SKIP: no fashion-mnist/ (ops/get-data could not fetch dataset-fashion-mnist)");
        return;
    }
    assert_eq!(ingest_t10k_and_compare(&dir, "t10k"), vec![1000; 10]);
}

#[test]
fn mnist_t10k_whole_set_exact_pixels_and_label_counts() {
    let h = ingest_t10k_and_compare(&data_dir().join("mnist"), "t10k");
    // MNIST's published t10k class counts.
    assert_eq!(h, vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
}

#[test]
fn gzipped_and_raw_files_give_the_same_records_and_limit_takes_the_first_n() {
    let dir = data_dir().join("fashion-mnist");
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!("SKIP: no fashion-mnist/*.gz");
        return;
    }
    let run = |suffix: &str| {
        let out = tempfile::tempdir().unwrap();
        let (i, l) = (dir.join(format!("train-images-idx3-ubyte{suffix}")), dir.join(format!("train-labels-idx1-ubyte{suffix}")));
        let s = ingest(&["idx", "--images", p(&i), "--labels", p(&l), "--limit", "3000", "--out", p(out.path())]);
        assert_eq!(s["records"], 3000, "{s}");
        (contents(out.path()), out)
    };
    let (raw, _a) = run("");
    let (gz, _b) = run(".gz");
    assert_eq!(raw, gz);
    assert_eq!(*raw.keys().next_back().unwrap(), 2999);
    assert!(raw.values().all(|(k, l, w, h, _)| k.starts_with("train-images-idx3-ubyte/") && l.is_some() && (*w, *h) == (28, 28)));
}

#[test]
fn opencv_digits_20x20_idx() {
    let dir = data_dir().join("opencv-digits");
    let out = tempfile::tempdir().unwrap();
    let (i, l) = (dir.join("digits-images-idx3-ubyte"), dir.join("digits-labels-idx1-ubyte"));
    let s = ingest(&["idx", "--images", p(&i), "--labels", p(&l), "--out", p(out.path())]);
    assert_eq!(s["records"], 5000, "{s}");
    let c = contents(out.path());
    let mut h = [0u32; 10];
    for (_, label, w, hh, _) in c.values() {
        assert_eq!((*w, *hh), (20, 20));
        h[label.unwrap() as usize] += 1;
    }
    assert_eq!(h, [500; 10]);
    // No --classes: no class names in the manifest.
    assert!(Dataset::open(out.path()).unwrap().manifest().classes.is_none());
}

fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

/// A failing `silt-ingest idx ...`: exit status 2, no panic, no records; returns stderr.
fn fails(args: &[&str], out: &Path) -> String {
    let mut a = vec!["idx"];
    a.extend(args);
    a.extend(["--out", p(out)]);
    let o = ingest_output(&a);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?} should fail: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("manifest.json").exists() || Dataset::open(out).unwrap().is_empty());
    err
}

#[test]
fn hostile_idx_files_stop_with_an_error_naming_the_file() {
    let mnist = data_dir().join("mnist");
    let (images, labels) = (mnist.join("t10k-images-idx3-ubyte"), mnist.join("t10k-labels-idx1-ubyte"));
    let train_labels = mnist.join("train-labels-idx1-ubyte");
    let d = tempfile::tempdir().unwrap();
    let w = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = d.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let real = std::fs::read(&images).unwrap();
    let out = d.path().join("out");
    let expect = |args: &[&str], file: &Path, words: &[&str]| {
        let err = fails(args, &out);
        assert!(err.contains(p(file)), "the error names {}: {err}", file.display());
        for word in words {
            assert!(err.contains(word), "expected {word:?} in: {err}");
        }
        let _ = std::fs::remove_dir_all(&out);
    };

    let truncated = w("truncated-images-idx3-ubyte", &real[..1_000_000]);
    expect(&["--images", p(&truncated)], &truncated, &["10000 x 28 x 28 = 7840000 bytes", "the file holds 999984"]);
    // The labels file given as the images and the other way round.
    expect(&["--images", p(&labels)], &labels, &["magic number 2049", "expected 2051", "this is a labels file"]);
    expect(&["--images", p(&images), "--labels", p(&images)], &images, &["magic number 2051", "expected 2049"]);
    let garbage = w("garbage", b"<html>404 not found</html>");
    expect(&["--images", p(&garbage)], &garbage, &["is not an IDX images", "0x3c68746d"]);
    // Huge declared dimensions: refused from the file's length, nothing allocated.
    let huge = w("huge", &idx_file(2051, &[u32::MAX, 65535, 65535], &real[16..1000]));
    expect(&["--images", p(&huge)], &huge, &["4294967295 x 65535 x 65535", "the file holds 984"]);
    let huge_gz = w("huge.gz", &gzip(&idx_file(2051, &[1 << 20, 1 << 12, 1 << 12], &[0; 4096])));
    expect(&["--images", p(&huge_gz)], &huge_gz, &["gunzip it first"]);
    let zero = w("zero", &idx_file(2051, &[3, 0, 28], &[]));
    expect(&["--images", p(&zero)], &zero, &["a dimension is 0"]);
    let short = w("short", &real[..10]);
    expect(&["--images", p(&short)], &short, &["too short for an IDX header"]);
    // Gzip: cut in half, or not gzip at all.
    let gz_real = gzip(&real);
    let cut_gz = w("cut-images-idx3-ubyte.gz", &gz_real[..gz_real.len() / 2]);
    let err = fails(&["--images", p(&cut_gz)], &out);
    assert!(err.contains(p(&cut_gz)) && (err.contains("gzip") || err.contains("the file holds")), "{err}");
    let _ = std::fs::remove_dir_all(&out);
    let not_gz = w("plain.gz", &real[..5000]);
    expect(&["--images", p(&not_gz)], &not_gz, &["gzip"]);
    // Labels that do not fit the images.
    expect(&["--images", p(&images), "--labels", p(&train_labels)], &train_labels, &["60000 labels", "10000 images"]);
    let five = w("five-classes.txt", b"zero\none\ntwo\nthree\nfour\n");
    expect(
        &["--images", p(&images), "--labels", p(&labels), "--classes", p(&five)],
        &labels,
        &["out of range", "names 5 classes"],
    );
    let missing = d.path().join("missing-images");
    expect(&["--images", p(&missing)], &missing, &["No such file"]);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}
