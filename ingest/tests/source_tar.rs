//! `tar` source: WebDataset-style shards built from real photos (`key.jpg` + `key.cls` +
//! `key.json`), including a damaged sample and a tar cut off mid-member.

mod common;
use common::*;
use std::collections::BTreeMap;

fn photos(n: usize) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir().join("photos");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    names.into_iter().take(n).map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap())).collect()
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, bytes: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, bytes).unwrap();
}

#[test]
fn webdataset_tars_give_labelled_records_and_survive_damage() {
    let photos = photos(30);
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new(); // key -> (label, bytes)
    let mut files = Vec::new();
    for (t, chunk) in photos.chunks(10).enumerate() {
        let mut b = tar::Builder::new(Vec::new());
        for (i, (_, bytes)) in chunk.iter().enumerate() {
            let key = format!("{:06}", t * 10 + i);
            let label = (t * 10 + i) % 7;
            let image: &[u8] = if t == 1 && i == 3 { &bytes[..bytes.len() / 3] } else { bytes };
            add(&mut b, &format!("{key}.jpg"), image);
            add(&mut b, &format!("{key}.cls"), label.to_string().as_bytes());
            add(&mut b, &format!("{key}.json"), b"{\"caption\": \"a photo\"}");
            if !(t == 1 && i == 3) {
                expected.insert(format!("shard-{t}.tar/{key}.jpg"), (label as i64, bytes.clone()));
            }
        }
        let mut data = b.into_inner().unwrap();
        let path = dir.path().join(format!("shard-{t}.tar"));
        if t == 2 {
            // Cut the last tar in the middle of sample 5's image: samples 0-4 survive.
            let cut = find(&data, b"000025.jpg").unwrap() + 512 + 1000;
            data.truncate(cut);
            for i in 5..10 {
                expected.remove(&format!("shard-2.tar/{:06}.jpg", 20 + i));
            }
        }
        std::fs::write(&path, data).unwrap();
        files.push(path);
    }
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["tar"];
    args.extend(files.iter().map(|f| p(f)));
    args.extend(["--out", p(out.path()), "--check", "full"]);
    let summary = ingest(&args);
    assert_eq!(summary["records"], expected.len() as u64, "{summary}");
    let got = contents(out.path());
    for (key, label, _, _, hash) in got.values() {
        let (want_label, bytes) = &expected[key];
        assert_eq!(*label, Some(*want_label), "{key}");
        assert_eq!(*hash, *blake3::hash(bytes).as_bytes(), "{key}");
    }
    let q = quarantine(out.path());
    let reasons: Vec<(&str, &str)> = q.iter().map(|(_, k, r)| (k.as_str(), r.as_str())).collect();
    assert!(reasons.contains(&("shard-1.tar/000013.jpg", "decode-error")), "{reasons:?}");
    assert!(reasons.iter().any(|(k, r)| k.starts_with("shard-2.tar/") && *r == "read-error"), "{reasons:?}");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
