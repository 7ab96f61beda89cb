//! Reports: a realistic metrics.jsonl (with a torn last line, unknown kinds, NaN tokens, a
//! resumed run) parsed tolerantly and drawn to PNG plots that are decoded and checked for size,
//! colour and text; image grids.

use silt::report::{image_grid, save_png, write_report, Metrics, ReportError};
use std::fmt::Write as _;
use std::path::Path;

/// A DeepCluster-like run: 6 epochs × 40 steps, global step counter, re-clustering and kNN
/// evaluation every epoch (plus the untrained baseline at epoch −1), sizes of k = 100 clusters.
fn synthetic_metrics() -> String {
    let mut s = String::new();
    s.push_str(r#"{"kind":"run","method":"deepcluster","arch":"alexnet","config":{"epochs":6,"k":100}}"#);
    s.push('\n');
    s.push_str(r#"{"kind":"eval","epoch":-1,"knn_top1":0.312,"knn_top5":0.701,"nmi_kmeans":0.12}"#);
    s.push('\n');
    let mut noise = 12345u64;
    let mut rnd = || {
        noise = noise.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (noise >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut step = 0u64;
    for epoch in 0..6u64 {
        // Cluster sizes: a few big clusters, a long tail, some empty ones.
        let sizes: Vec<u64> = (0..100u64).map(|i| if i % 17 == 16 { 0 } else { 20_000 / (i + 3) + (i * 7919 % 13) }).collect();
        let nmi = 0.2 + 0.08 * epoch as f64;
        let prev = if epoch > 0 { format!(r#","nmi_prev":{}"#, 0.5 + 0.07 * epoch as f64) } else { String::new() };
        writeln!(
            s,
            r#"{{"kind":"cluster","epoch":{epoch},"k":100,"kmeans_loss":{},"nmi_labels":{nmi},"ami_labels":{},"ari_labels":{},"accuracy_labels":{}{prev},"empty_clusters":6,"sizes":{:?}}}"#,
            900.0 - 50.0 * epoch as f64,
            nmi * 0.7,
            nmi * 0.4,
            nmi * 0.9,
            sizes
        )
        .unwrap();
        let mut sum = 0.0;
        for _ in 0..40 {
            step += 1;
            let t = step as f64 / 240.0;
            let loss = 4.6 * (-1.5 * t).exp() + 0.6 + 0.25 * rnd();
            let lr = 0.05 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
            sum += loss;
            writeln!(
                s,
                r#"{{"kind":"step","epoch":{epoch},"step":{step},"loss":{loss},"lr":{lr},"accuracy":{},"batch_hash":"ab12","images_per_s":{},"time_s":{}}}"#,
                0.1 + 0.8 * t,
                780.0 + 60.0 * rnd(),
                step as f64 * 0.3
            )
            .unwrap();
        }
        writeln!(s, r#"{{"kind":"epoch","epoch":{epoch},"loss":{},"lr":0.05,"seconds":12.5,"images":10240}}"#, sum / 40.0).unwrap();
        writeln!(s, r#"{{"kind":"eval","epoch":{epoch},"knn_top1":{},"knn_top5":{},"nmi_kmeans":{}}}"#, 0.45 + 0.05 * epoch as f64, 0.8 + 0.02 * epoch as f64, 0.2 + 0.05 * epoch as f64).unwrap();
        if epoch == 2 {
            // Things a reader must shrug off: an unknown kind, NaN from Python, a non-object.
            s.push_str("{\"kind\":\"checkpoint\",\"path\":\"ckpt-2.safetensors\"}\n");
            s.push_str("{\"kind\":\"step\",\"epoch\":2,\"step\":120,\"loss\":NaN,\"lr\":0.03}\n");
            s.push_str("[1, 2, 3]\n\n");
        }
    }
    // Crash in the middle of a line.
    s.push_str(r#"{"kind":"step","epoch":6,"step":241,"loss":0.7"#);
    s
}

fn distinct_colours(img: &image::RgbImage) -> usize {
    let mut set = std::collections::HashSet::new();
    for p in img.pixels() {
        set.insert(p.0);
    }
    set.len()
}

/// Dark (text or axis) pixels in a rectangle.
fn dark_in(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
    let mut n = 0;
    for y in y0..y1.min(img.height()) {
        for x in x0..x1.min(img.width()) {
            let p = img.get_pixel(x, y).0;
            if p.iter().all(|&c| c < 110) {
                n += 1;
            }
        }
    }
    n
}

/// A scratch directory; kept (and printed) when SILT_KEEP_REPORT is set, to look at the plots.
fn scratch() -> (Option<tempfile::TempDir>, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    if std::env::var_os("SILT_KEEP_REPORT").is_some() {
        let p = d.keep();
        println!("keeping {}", p.display());
        (None, p)
    } else {
        let p = d.path().to_path_buf();
        (Some(d), p)
    }
}

/// Pixels close to a series colour.
fn near(img: &image::RgbImage, c: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0.iter().zip(c).all(|(&a, b)| (a as i32 - b as i32).abs() <= 12)).count()
}

fn check_png(path: &Path) -> image::RgbImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    assert_eq!((img.width(), img.height()), (1000, 600), "{}", path.display());
    let colours = distinct_colours(&img);
    // Title, centred at the top: text pixels present.
    let title = dark_in(&img, 150, 0, 850, 50);
    // Tick labels and the vertical axis name left of the plot area; x tick labels below it.
    let left = dark_in(&img, 0, 60, 110, 540);
    let bottom = dark_in(&img, 100, 540, 1000, 600);
    println!("{}: {colours} colours, dark pixels title {title} left {left} bottom {bottom}", path.file_name().unwrap().to_string_lossy());
    assert!(colours >= 8, "{}: only {colours} colours (blank?)", path.display());
    assert!(title > 150, "{}: no title text ({title} dark pixels)", path.display());
    assert!(left > 200, "{}: no y tick labels ({left} dark pixels)", path.display());
    assert!(bottom > 150, "{}: no x tick labels ({bottom} dark pixels)", path.display());
    // The first series is blue (drawn lighter under epoch means on the loss plot).
    let bluish = img.pixels().filter(|p| p.0[2] as i32 - p.0[0] as i32 > 40 && p.0[2] > 150).count();
    assert!(bluish > 100, "{}: the first series (blue) is not drawn", path.display());
    img
}

#[test]
fn report_draws_every_plot_from_a_realistic_log() {
    let (_guard, dir) = scratch();
    std::fs::write(dir.join("metrics.jsonl"), synthetic_metrics()).unwrap();
    let summary = write_report(&dir).unwrap();
    for p in &summary.written {
        println!("wrote {}", p.display());
    }
    let names: Vec<String> = summary.written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        ["loss.png", "lr.png", "throughput.png", "accuracy.png", "nmi_labels.png", "nmi_prev.png", "kmeans_loss.png", "knn.png", "cluster_sizes.png"]
    );
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    assert!(summary.written.iter().all(|p| p.parent() == Some(&dir.join("report"))));
    // The torn last line and the non-object are reported; the NaN line was read (NaN → missing).
    assert_eq!(summary.bad_lines.len(), 2, "{:?}", summary.bad_lines);
    assert!(summary.bad_lines.last().unwrap().last);
    assert!(!summary.bad_lines[0].last);
    for p in &summary.written {
        check_png(p);
    }
    // Several series drawn in their own colours where the plot has them.
    let nmi = image::open(dir.join("report/nmi_labels.png")).unwrap().to_rgb8();
    for c in [[255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189]] {
        assert!(near(&nmi, c) > 50, "nmi_labels.png: colour {c:?} missing");
    }
    let loss = image::open(dir.join("report/loss.png")).unwrap().to_rgb8();
    assert!(near(&loss, [255, 127, 14]) > 50, "loss.png: epoch means missing");
}

#[test]
fn plots_without_data_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Only epoch summaries: loss and lr per epoch, nothing else.
    let text = (0..5).map(|e| format!(r#"{{"kind":"epoch","epoch":{e},"loss":{},"lr":{}}}"#, 3.0 / (e + 1) as f64, 0.1 / (e + 1) as f64)).collect::<Vec<_>>().join("\n");
    std::fs::write(dir.path().join("metrics.jsonl"), text).unwrap();
    let summary = write_report(dir.path()).unwrap();
    let names: Vec<String> = summary.written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["loss.png", "lr.png"]);
    for p in &summary.written {
        check_png(p);
    }
    let skipped: Vec<&str> = summary.skipped.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(skipped, ["throughput.png", "accuracy.png", "nmi_labels.png", "nmi_prev.png", "kmeans_loss.png", "knn.png", "cluster_sizes.png"]);
    assert!(summary.skipped.iter().all(|s| !s.reason.is_empty()));
    // An empty file: nothing to draw, not an error.
    std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
    let summary = write_report(dir.path()).unwrap();
    assert!(summary.written.is_empty() && summary.skipped.len() == 9);
    // A missing file is an I/O error naming it.
    let e = write_report(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(e, ReportError::Io { .. }) && e.to_string().contains("metrics.jsonl"), "{e}");
}

#[test]
fn metrics_reader_is_tolerant() {
    let text = [
        r#"{"kind":"step","epoch":0,"step":0,"loss":"high","lr":0.1,"extra":{"nested":[1,2]}}"#, // wrong type -> None
        r#"{"kind":"step","epoch":0,"step":1,"loss":2.0}"#,
        r#"{"kind":"step","epoch":0,"step":2,"loss":1.9,"time_s":Infinity}"#,
        r#"{"kind":"step","epoch":1,"step":0,"loss":1.5}"#, // steps restart each epoch
        r#"{"kind":"step","epoch":1,"step":1,"loss":1.4}"#,
        r#"{"kind":"step","epoch":1,"step":2,"loss":1.3}"#,
        r#"{"kind":"step","epoch":1,"step":1,"loss":1.45}"#, // resumed from a checkpoint at step 1
        r#"{"kind":"step","epoch":1,"step":2,"loss":1.35}"#,
        r#"{"kind":"step","loss":1.2}"#, // no epoch, no step
        r#"{"kind":"eval","epoch":-1,"knn_top1":0.3}"#,
        r#"{"kind":"eval","epoch":0,"knn_top1":0.5}"#,
        r#"{"kind":"eval","epoch":0,"knn_top1":0.55}"#, // re-logged after resume: last wins
        r#"{"kind":"cluster","epoch":0,"sizes":[3,0,"x",5]}"#,
        r#"{"kind":"epoch"}"#,
        r#"{"kind":"epoch","loss":1.0}"#,
        r#"{"no_kind":true}"#,
        r#"{"kind":"step","epoch":1,"step":3,"lo"#,
    ]
    .join("\n");
    let m = Metrics::parse(&text);
    assert_eq!(m.lines, 17);
    assert_eq!(m.unknown, 1);
    assert_eq!(m.bad_lines.len(), 1);
    assert!(m.bad_lines[0].last && m.bad_lines[0].line == 17);
    let xs: Vec<f64> = m.steps.iter().map(|s| s.x).collect();
    let losses: Vec<Option<f64>> = m.steps.iter().map(|s| s.loss).collect();
    assert_eq!(xs, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(losses, [None, Some(2.0), Some(1.9), Some(1.5), Some(1.45), Some(1.35), Some(1.2)]);
    assert_eq!(m.steps[0].lr, Some(0.1));
    assert_eq!(m.steps[2].time_s, None);
    assert_eq!(m.evals.iter().map(|e| (e.epoch, e.knn_top1)).collect::<Vec<_>>(), [(-1, Some(0.3)), (0, Some(0.55))]);
    assert_eq!(m.clusters[0].sizes.as_deref(), Some(&[3, 0, 5][..]));
    assert_eq!(m.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [0, 1]);
    // Global step counters pass through unchanged.
    let m = Metrics::parse("{\"kind\":\"step\",\"epoch\":0,\"step\":10}\n{\"kind\":\"step\",\"epoch\":1,\"step\":20}\n");
    assert_eq!(m.steps.iter().map(|s| s.x).collect::<Vec<_>>(), [10.0, 20.0]);
}

#[test]
fn image_grid_lays_out_cells() {
    // Ten real MNIST-sized images of two sizes (28×28 and 20×14), 4 per row, 2 px padding.
    let images: Vec<(u32, u32, Vec<u8>)> = (0..10u32)
        .map(|i| {
            let (w, h) = if i % 3 == 0 { (20, 14) } else { (28, 28) };
            let px = (0..w * h).flat_map(|j| [(i * 25) as u8, (j % 256) as u8, 200]).collect();
            (w, h, px)
        })
        .collect();
    let g = image_grid(&images, 4, 2).unwrap();
    assert_eq!((g.width(), g.height()), (4 * 28 + 5 * 2, 3 * 28 + 4 * 2));
    // Image 1 (28×28) sits at cell (0, 1): top-left pixel at (2 + 28 + 2, 2).
    assert_eq!(g.get_pixel(32, 2).0, [25, 0, 200]);
    // Image 0 (20×14) is centred in its 28×28 cell: offset (4, 7).
    assert_eq!(g.get_pixel(2 + 4, 2 + 7).0, [0, 0, 200]);
    assert_eq!(g.get_pixel(2, 2).0, [255, 255, 255]);
    // The empty cells of the last row stay white.
    assert_eq!(g.get_pixel(g.width() - 3, g.height() - 3).0, [255, 255, 255]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/grid.png");
    save_png(&g, &path).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8(), g);
    // Bad input: wrong byte count, no images, zero columns.
    assert!(matches!(image_grid(&[(2, 2, vec![0; 11])], 1, 0), Err(ReportError::Invalid(_))));
    assert!(matches!(image_grid(&[], 3, 0), Err(ReportError::Invalid(_))));
    assert!(matches!(image_grid(&images, 0, 0), Err(ReportError::Invalid(_))));
}
