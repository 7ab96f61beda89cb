//! `zip` source: PIC's real train.zip + train_map.txt, and a hostile zip (`..` and absolute
//! entry names, truncated and empty entries, a symlink entry).

mod common;
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};

#[test]
fn imagenet_zip_with_map_gives_labelled_records_equal_to_the_entries() {
    let data = data_dir().join("imagenet-zip");
    let out = tempfile::tempdir().unwrap();
    let zip_path = data.join("train.zip");
    let map_path = data.join("train_map.txt");
    let summary = ingest(&["zip", "--zip", p(&zip_path), "--map", p(&map_path), "--out", p(out.path()), "--check", "full"]);
    let map: Vec<(String, i64)> = std::fs::read_to_string(&map_path)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('\t').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(map.len(), 637);
    assert_eq!(summary["records"], 637, "{summary}");
    assert_eq!(summary["quarantined"], 0, "{summary}");

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let got = contents(out.path());
    for (id, (key, label)) in map.iter().enumerate() {
        let (gkey, glabel, w, h, hash) = &got[&(id as u64)];
        assert_eq!((gkey, *glabel), (key, Some(*label)));
        assert!(*w > 0 && *h > 0);
        let mut bytes = Vec::new();
        zip.by_name(key).unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(*hash, *blake3::hash(&bytes).as_bytes(), "{key}");
    }
    let labels: std::collections::BTreeSet<i64> = got.values().filter_map(|r| r.1).collect();
    assert_eq!(labels.len(), 10, "10 classes");
}

#[test]
fn hostile_zip_entries_are_quarantined_not_extracted() {
    let data = data_dir();
    let photo = std::fs::read(data.join("photos").join(first_photo(&data))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("hostile.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in [
            ("../escape.jpg", &photo[..]),
            ("/etc/absolute.jpg", &photo[..]),
            ("n01/a/../../../up.jpg", &photo[..]),
            ("n01/good.jpg", &photo[..]),
            ("n01/truncated.jpg", &photo[..photo.len() / 2]),
            ("n01/empty.jpg", &[][..]),
            ("n01/noise.jpg", &[0x5a; 4096][..]),
        ] {
            w.start_file(name, opts).unwrap();
            w.write_all(bytes).unwrap();
        }
        w.add_symlink("n01/link.jpg", "/etc/passwd", opts).unwrap();
        w.finish().unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let summary = ingest(&["zip", "--zip", p(&zip_path), "--out", p(out.path()), "--check", "full"]);
    assert_eq!(summary["records"], 1, "{summary}");
    let q = quarantine(out.path());
    let by_key: BTreeMap<&str, &str> = q.iter().map(|(_, k, r)| (k.as_str(), r.as_str())).collect();
    assert_eq!(
        by_key,
        BTreeMap::from([
            ("../escape.jpg", "unsafe-path"),
            ("/etc/absolute.jpg", "unsafe-path"),
            ("n01/a/../../../up.jpg", "unsafe-path"),
            ("n01/truncated.jpg", "decode-error"),
            ("n01/empty.jpg", "empty"),
            ("n01/noise.jpg", "not-an-image"),
            ("n01/link.jpg", "read-error"),
        ])
    );
    assert_eq!(contents(out.path()).values().next().unwrap().0, "n01/good.jpg");
    // Nothing was written outside the output directory.
    assert!(!dir.path().join("escape.jpg").exists() && !std::path::Path::new("/etc/absolute.jpg").exists());
}

fn first_photo(data: &std::path::Path) -> String {
    let tsv = std::fs::read_to_string(data.join("photos/photos.tsv")).unwrap();
    let line = tsv.lines().find(|l| l.contains("\tphoto\t")).expect("a photo row");
    line.split('\t').next().unwrap().to_string()
}
