//! `silt report`: arguments, output, and the error for a run directory without metrics.

use std::process::{Command, Output};

fn silt_report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silt")).arg("report").args(args).output().unwrap()
}

fn log() -> String {
    let mut s = String::new();
    for e in 0..3 {
        for k in 0..10 {
            let step = e * 10 + k;
            s.push_str(&format!("{{\"kind\":\"step\",\"epoch\":{e},\"step\":{step},\"loss\":{},\"lr\":0.1}}\n", 3.0 - 0.05 * step as f64));
        }
        s.push_str(&format!("{{\"kind\":\"eval\",\"epoch\":{e},\"knn_top1\":{}}}\n", 0.5 + 0.1 * e as f64));
    }
    s.push_str("{\"kind\":\"step\",\"epoch\":3,");
    s
}

#[test]
fn report_verb_prints_the_files_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.jsonl"), log()).unwrap();
    let out = silt_report(&[dir.path().to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    println!("{text}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["loss.png", "lr.png", "knn.png"] {
        assert!(text.contains(&format!("wrote {}", dir.path().join("report").join(f).display())), "{f} not listed:\n{text}");
        assert!(dir.path().join("report").join(f).exists());
    }
    assert!(text.contains("no cluster_sizes.png: no cluster record with sizes"));
    assert!(text.contains("skipped line 34 (last line, likely cut short by a crash)"), "{text}");
    assert!(text.contains("3 plots written"));

    // --json, another output directory and size.
    let out_dir = dir.path().join("elsewhere");
    let out = silt_report(&[
        dir.path().to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--width",
        "640",
        "--height",
        "400",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["written"].as_array().unwrap().len(), 3);
    assert_eq!(v["bad_lines"][0]["last"], true);
    let img = image::open(out_dir.join("knn.png")).unwrap();
    assert_eq!((img.width(), img.height()), (640, 400));

    // A run directory without metrics: an error naming the file.
    let empty = tempfile::tempdir().unwrap();
    let out = silt_report(&[empty.path().to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("metrics.jsonl"), "{err}");
}
