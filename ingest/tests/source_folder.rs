//! `folder` source on real photos, ImageFolder labels, and hostile trees (symlinks out of the
//! tree, non-images, truncated and empty files).

mod common;
use common::*;
use std::collections::BTreeMap;

/// photos/ holds 702 distinct real JPEGs (plus photos.tsv, which the extension filter skips).
#[test]
fn folder_of_real_photos_keeps_every_photo_byte_for_byte() {
    let data = data_dir();
    let out = tempfile::tempdir().unwrap();
    let photos = data.join("photos");
    let summary = ingest(&["folder", p(&photos), "--out", p(out.path()), "--shard-size", "20000000"]);
    assert_eq!(summary["records"], 702, "{summary}");
    assert_eq!(summary["quarantined"], 0, "{summary}");
    assert_eq!(summary["duplicates"], 0, "{summary}");

    // photos.tsv: file width height ... md5; widths/heights come from the SOF header.
    let tsv = std::fs::read_to_string(photos.join("photos.tsv")).unwrap();
    let expected: BTreeMap<String, (u32, u32)> = tsv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), (c[1].parse().unwrap(), c[2].parse().unwrap()))
        })
        .collect();
    let got = contents(out.path());
    assert_eq!(got.len(), 702);
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    for (id, (key, label, w, h, hash)) in &got {
        // ids are positions in sorted listing order
        assert_eq!(key, names[*id as usize]);
        assert_eq!(*label, None, "flat folder has no classes");
        assert_eq!((*w, *h), expected[key], "{key}");
        let bytes = std::fs::read(photos.join(key)).unwrap();
        assert_eq!(*hash, *blake3::hash(&bytes).as_bytes(), "{key}");
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["shards"].as_array().unwrap().len() > 3, "20 MB shards split 139 MB");
    assert_eq!(manifest["params"]["ingest_complete"], true);
}

#[cfg(unix)]
#[test]
fn image_folder_labels_and_hostile_files() {
    let data = data_dir();
    let photos = data.join("photos");
    let tree = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let mut jpgs: Vec<_> = std::fs::read_dir(&photos).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")).collect();
    jpgs.sort();
    let root = tree.path();
    for (class, files) in [("cat", &jpgs[0..3]), ("dog", &jpgs[3..5])] {
        std::fs::create_dir(root.join(class)).unwrap();
        for f in files {
            std::fs::copy(f, root.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    // Hostile entries, all in class "dog":
    let photo = std::fs::read(&jpgs[5]).unwrap();
    std::fs::write(root.join("dog/truncated.jpg"), &photo[..2048]).unwrap();
    std::fs::write(root.join("dog/empty.jpg"), b"").unwrap();
    std::fs::write(root.join("dog/error-page.jpg"), b"<html><body>404 Not Found</body></html>").unwrap();
    std::fs::write(outside.path().join("secret.jpg"), &photo).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.jpg"), root.join("dog/link-out.jpg")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("dog/dir-link-out")).unwrap();
    // A link inside the tree is fine; its bytes equal cat's first photo, so it is a duplicate.
    let first_cat = root.join("cat").join(jpgs[0].file_name().unwrap());
    std::os::unix::fs::symlink(&first_cat, root.join("dog/link-in.jpg")).unwrap();
    std::fs::write(root.join("dog/notes.txt"), b"not listed: wrong extension").unwrap();

    let out = tempfile::tempdir().unwrap();
    let summary = ingest(&["folder", p(root), "--out", p(out.path()), "--check", "full"]);
    assert_eq!(summary["records"], 5, "{summary}");
    assert_eq!(summary["duplicates"], 1, "{summary}");
    let q = quarantine(out.path());
    let by_key: BTreeMap<&str, &str> = q.iter().map(|(_, k, r)| (k.as_str(), r.as_str())).collect();
    assert_eq!(
        by_key,
        BTreeMap::from([
            ("dog/dir-link-out", "symlink-escape"),
            ("dog/empty.jpg", "empty"),
            ("dog/error-page.jpg", "not-an-image"),
            ("dog/link-out.jpg", "symlink-escape"),
            ("dog/truncated.jpg", "decode-error"),
        ])
    );
    assert_eq!(summary["quarantined"], 5);

    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["classes"], serde_json::json!(["cat", "dog"]));
    let got = contents(out.path());
    for (key, label, ..) in got.values() {
        let want = if key.starts_with("cat/") { 0 } else { 1 };
        assert_eq!(*label, Some(want), "{key}");
    }
    assert_eq!(got.values().filter(|r| r.1 == Some(0)).count(), 3);
}
