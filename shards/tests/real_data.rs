//! Real data: shards written from the real photos and MNIST digits verify, and their payloads
//! give back the original bytes and pixels.

mod common;
use common::real_data_dir;
use silt_shards::{verify_dataset, ContentType, Dataset, DatasetWriter, DatasetWriterOptions, Record};
use std::collections::HashMap;

#[test]
fn real_photos_roundtrip_and_decode_to_the_original_pixels() {
    let data = real_data_dir();
    let tsv = std::fs::read_to_string(data.join("photos/photos.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_file, c_w, c_h) = (col("file"), col("width"), col("height"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    assert!(rows.len() >= 500, "expected the ~700 real photos, found {}", rows.len());

    let out = tempfile::tempdir().unwrap();
    let opts = DatasetWriterOptions { target_shard_bytes: 16 << 20, ..Default::default() };
    let (writer, _) = DatasetWriter::open(out.path(), opts).unwrap();
    let mut w = writer.shard_writer();
    let mut originals = HashMap::new();
    for (id, row) in rows.iter().enumerate() {
        let bytes = std::fs::read(data.join("photos").join(row[c_file])).unwrap();
        w.append(&Record {
            id: id as u64,
            key: row[c_file],
            label: None,
            width: row[c_w].parse().unwrap(),
            height: row[c_h].parse().unwrap(),
            content_type: ContentType::sniff(&bytes),
            bytes: &bytes,
        })
        .unwrap();
        originals.insert(row[c_file].to_string(), bytes);
    }
    w.finish().unwrap();

    let report = verify_dataset(out.path());
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.records, rows.len() as u64);
    assert!(report.shards > 1, "139 MB of photos at 16 MiB per shard make several shards");

    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.len(), rows.len() as u64);
    let mut decoded = 0;
    for g in 0..ds.len() {
        let r = ds.get(g).unwrap();
        let original = &originals[r.key];
        assert_eq!(r.bytes, original.as_slice(), "{}: payload differs from the file", r.key);
        assert_eq!(r.content_type, ContentType::Jpeg, "{}", r.key);
        // Decode the payload in place (zero copy) and the original file; pixels must agree and
        // the size must be the one the JPEG header announced.
        if g % 7 == 0 {
            let a = turbojpeg::decompress(r.bytes, turbojpeg::PixelFormat::RGB).unwrap();
            let b = turbojpeg::decompress(original, turbojpeg::PixelFormat::RGB).unwrap();
            assert_eq!((a.width as u32, a.height as u32), (r.width, r.height), "{}", r.key);
            assert!(a.pixels == b.pixels, "{}: pixels differ", r.key);
            decoded += 1;
        }
    }
    assert!(decoded >= 70);
}

/// Reads an IDX file (big-endian header) into (dims, data).
fn read_idx(path: &std::path::Path) -> (Vec<usize>, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let ndims = b[3] as usize;
    let dims: Vec<usize> = (0..ndims).map(|i| u32::from_be_bytes(b[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    (dims, b[4 + 4 * ndims..].to_vec())
}

#[test]
fn mnist_pixels_and_labels_roundtrip() {
    let data = real_data_dir().join("mnist");
    let (dims, pixels) = read_idx(&data.join("t10k-images-idx3-ubyte"));
    let (_, labels) = read_idx(&data.join("t10k-labels-idx1-ubyte"));
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    assert_eq!((n, h, w), (10000, 28, 28));

    let out = tempfile::tempdir().unwrap();
    let opts = DatasetWriterOptions { max_records_per_shard: Some(1024), ..Default::default() };
    let (writer, _) = DatasetWriter::open(out.path(), opts).unwrap();
    writer.update_manifest(|m| m.classes = Some((0..10).map(|d| d.to_string()).collect())).unwrap();
    let mut sw = writer.shard_writer();
    for i in 0..n {
        let key = format!("t10k/{i:05}");
        sw.append(&Record {
            id: i as u64,
            key: &key,
            label: Some(labels[i] as i64),
            width: w as u32,
            height: h as u32,
            content_type: ContentType::RawU8,
            bytes: &pixels[i * h * w..(i + 1) * h * w],
        })
        .unwrap();
    }
    sw.finish().unwrap();
    assert!(verify_dataset(out.path()).ok());
    let ds = Dataset::open(out.path()).unwrap();
    assert_eq!(ds.manifest().shards.len(), 10);
    assert_eq!(ds.manifest().classes.as_ref().unwrap().len(), 10);
    for i in 0..n {
        let r = ds.get(i as u64).unwrap();
        assert_eq!(r.bytes, &pixels[i * h * w..(i + 1) * h * w]);
        assert_eq!(r.label, Some(labels[i] as i64));
        assert_eq!(r.id, i as u64);
    }
    // Labels read back from the shards give MNIST's test-set counts (980 zeros ... 1009 nines).
    let mut per_class = [0u32; 10];
    for shard in ds.shards() {
        for r in shard.iter() {
            per_class[r.unwrap().label.unwrap() as usize] += 1;
        }
    }
    assert_eq!(per_class[0], 980);
    assert_eq!(per_class[9], 1009);
}
