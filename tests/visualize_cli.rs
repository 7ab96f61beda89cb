//! `silt visualize` through the binary on a short DeepCluster run on real Fashion-MNIST: the top
//! images of filters and of clusters, and gradient-ascent filter images.

mod train_common;

use std::path::Path;
use std::process::Command;
use train_common::fashion_shards;

fn silt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_silt")).args(args).output().unwrap()
}

fn silt_json(args: &[&str]) -> serde_json::Value {
    let out = silt(args);
    assert!(out.status.success(), "silt {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

#[test]
fn top_images_by_filter_and_cluster_and_filter_images() {
    let tmp = tempfile::tempdir().unwrap();
    let train = fashion_shards(&tmp.path().join("train"), "train", 600);
    let other = fashion_shards(&tmp.path().join("test"), "t10k", 300);
    let run = tmp.path().join("dc");
    let args = ["train", p(&train), "--method", "deepcluster", "--arch", "small", "--crop", "28", "--epochs", "1", "--batch-size", "64", "--k", "12", "--dim-pca", "16", "--workers", "2", "--seed", "4", "--run-dir", p(&run), "--json"];
    silt_json(&args);

    // Per filter: 5 filters of conv2, 9 images each; each 28-px image zoomed ×4 (to ≥ 96 px) in a
    // grid with 2-px gaps.
    let out = tmp.path().join("top.png");
    let v = silt_json(&["visualize", "top-images", "--checkpoint", p(&run), "--data", p(&train), "--layer", "conv2", "--filters", "0,1,2,3,4", "--out", p(&out), "--workers", "2", "--json"]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let recs: Vec<u64> = r["records"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(recs.len(), 9);
        assert!(recs.iter().all(|&i| i < 600));
        let mut uniq = recs.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 9, "a filter's top images are distinct records: {recs:?}");
    }
    assert_eq!(png_size(&out), (9 * 112 + 10 * 2, 5 * 112 + 6 * 2));

    // Per cluster: rows are the largest clusters of the run's pseudo-labels, and every image in a
    // row carries that row's label.
    let labels: Vec<i64> = std::fs::read_to_string(run.join("pseudo_labels.tsv")).unwrap().lines().skip(1).map(|l| l.rsplit('\t').next().unwrap().parse().unwrap()).collect();
    let out = tmp.path().join("clusters.png");
    let v = silt_json(&["visualize", "top-images", "--by", "cluster", "--checkpoint", p(&run), "--data", p(&train), "--max-filters", "4", "--count", "6", "--out", p(&out), "--workers", "2", "--json"]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let mut sizes = Vec::new();
    for r in rows {
        let label: i64 = r["row"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let recs: Vec<usize> = r["records"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert!(recs.iter().all(|&i| labels[i] == label), "row {} holds images of other clusters", r["row"]);
        sizes.push(labels.iter().filter(|&&l| l == label).count());
    }
    assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "largest clusters first: {sizes:?}");
    assert!(out.exists());

    // Pseudo-labels of another dataset are refused, naming the file.
    let bad = silt(&["visualize", "top-images", "--by", "cluster", "--checkpoint", p(&run), "--data", p(&other), "--out", p(&tmp.path().join("x.png"))]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("pseudo_labels.tsv") && err.contains("another dataset"), "{err}");

    // Gradient ascent: every filter's share of the layer's mean activation rises.
    let out = tmp.path().join("filters.png");
    let v = silt_json(&["visualize", "filters", "--checkpoint", p(&run), "--layer", "conv3", "--max-filters", "6", "--iterations", "40", "--lr", "3", "--out", p(&out), "--json"]);
    let filters = v["filters"].as_array().unwrap();
    assert_eq!(filters.len(), 6);
    for f in filters {
        let (a, b) = (f["start_share"].as_f64().unwrap(), f["end_share"].as_f64().unwrap());
        eprintln!("filter {}: share {a:.4} -> {b:.4}", f["filter"]);
        assert!(b > a, "filter {}: share {a} -> {b}", f["filter"]);
    }
    // 6 filters in a 3-column grid.
    assert_eq!(png_size(&out), (3 * 112 + 4 * 2, 2 * 112 + 3 * 2));

    // A filter the layer does not have is a clear error.
    let bad = silt(&["visualize", "filters", "--checkpoint", p(&run), "--layer", "conv1", "--filters", "999", "--out", p(&out)]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("999"));
}
