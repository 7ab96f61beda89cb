//! `--resize-shorter 256 --quality 90` on PIC's real train.zip: large images come out as JPEGs
//! whose shorter side is 256 with the aspect kept; small ones are stored untouched.

mod common;
use common::*;
use std::io::Read;

#[test]
fn resize_shorter_side_and_reencode_real_photos() {
    let data = data_dir().join("imagenet-zip");
    let (zip_path, map) = (data.join("train.zip"), data.join("train_map.txt"));
    let out = tempfile::tempdir().unwrap();
    let s = ingest(&["zip", "--zip", p(&zip_path), "--map", p(&map), "--out", p(out.path()), "--resize-shorter", "256", "--quality", "90"]);
    assert_eq!(s["records"], 637, "{s}");
    let ds = silt_shards::Dataset::open(out.path()).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let (mut resized, mut kept) = (0, 0);
    let (mut bytes_before, mut bytes_after) = (0, 0);
    for i in 0..ds.len() {
        let rec = ds.get(i).unwrap();
        let mut orig = Vec::new();
        zip.by_name(rec.key).unwrap().read_to_end(&mut orig).unwrap();
        let oh = turbojpeg::read_header(&orig).unwrap();
        let h = turbojpeg::read_header(rec.bytes).expect("stored bytes are a JPEG");
        assert_eq!((h.width as u32, h.height as u32), (rec.width, rec.height), "{}", rec.key);
        if oh.width.min(oh.height) > 256 {
            resized += 1;
            assert_eq!(rec.width.min(rec.height), 256, "{}", rec.key);
            let want = silt_ingest::transform::target_size(oh.width as u32, oh.height as u32, 256);
            assert_eq!((rec.width, rec.height), want, "{}", rec.key);
            (bytes_before, bytes_after) = (bytes_before + orig.len(), bytes_after + rec.bytes.len());
            turbojpeg::decompress(rec.bytes, turbojpeg::PixelFormat::RGB).expect("re-encoded JPEG decodes");
        } else {
            kept += 1;
            assert_eq!(rec.bytes, &orig[..], "small images are kept byte for byte");
        }
    }
    assert!(resized > 100, "{resized} resized, {kept} kept");
    assert!(bytes_after * 2 < bytes_before, "resized images take {bytes_after} bytes, originals {bytes_before}");
    eprintln!("{resized} resized ({bytes_before} -> {bytes_after} bytes), {kept} kept as they were");
}
