//! `--part i/n`: disjoint parts whose union is the whole ingest, with global ids.

mod common;
use common::*;

#[test]
fn parts_are_disjoint_and_together_equal_the_whole() {
    let data = data_dir();
    let zip = data.join("imagenet-zip/train.zip");
    let map = data.join("imagenet-zip/train_map.txt");
    let whole = tempfile::tempdir().unwrap();
    ingest(&["zip", "--zip", p(&zip), "--map", p(&map), "--out", p(whole.path())]);
    let whole = contents(whole.path());
    assert_eq!(whole.len(), 637);

    let mut union = Contents::new();
    let outs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (i, out) in (0..3u64).zip(&outs) {
        let part = format!("{i}/3");
        let s = ingest(&["zip", "--zip", p(&zip), "--map", p(&map), "--out", p(out.path()), "--part", &part]);
        let got = contents(out.path());
        assert_eq!(s["records"].as_u64().unwrap(), got.len() as u64);
        assert!(got.keys().all(|id| id % 3 == i), "part {i} holds only its own ids");
        // Part shards carry the part in their names, so part directories can be merged.
        let names: Vec<String> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".silt")).collect();
        assert!(names.iter().all(|n| n.starts_with(&format!("part{i:05}of00003-"))), "{names:?}");
        for (id, rec) in got {
            assert!(union.insert(id, rec).is_none());
        }
    }
    assert_eq!(union, whole);

    // `merge` joins the parts into one dataset equal to the whole.
    let merged = tempfile::tempdir().unwrap();
    let target = merged.path().join("all");
    let res = ingest_output_plain(&["merge", p(outs[0].path()), p(outs[1].path()), p(outs[2].path()), "--out", p(&target)]);
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert_eq!(contents(&target), whole);
    let report = silt_shards::verify_dataset(&target);
    assert!(report.ok() && report.records == 637, "{:?}", report.problems);
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(target.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"]["ingest"]["part"]["count"], 1);
    assert_eq!(manifest["params"]["merged_from"].as_array().map(|a| a.len()), Some(3));
    // Two parts are not the whole: refused.
    let res = ingest_output_plain(&["merge", p(outs[0].path()), p(outs[1].path()), "--out", p(&merged.path().join("x"))]);
    assert!(!res.status.success());
}

fn ingest_output_plain(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin()).args(args).output().unwrap()
}
