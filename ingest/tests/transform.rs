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

#[test]
fn store_raw_keeps_the_decoded_pixels() {
    // Real photos (baseline and progressive JPEGs, a CMYK one if the set has it): every record is
    // RGB pixels, exactly libjpeg-turbo's full decode of the original; with --resize-shorter the
    // pixels of the resized image, its shorter side the target.
    let photos = data_dir().join("photos");
    let rows: Vec<Vec<String>> = std::fs::read_to_string(photos.join("photos.tsv")).unwrap().lines().skip(1).map(|l| l.split('\t').map(String::from).collect()).collect();
    let src = tempfile::tempdir().unwrap();
    let mut picked = 0;
    for r in &rows {
        let file = &r[0];
        let bytes = std::fs::read(photos.join(file)).unwrap();
        let Ok(h) = turbojpeg::read_header(&bytes) else { continue };
        if h.width * h.height < 400_000 && picked < 8 {
            std::fs::write(src.path().join(file), &bytes).unwrap();
            picked += 1;
        }
    }
    assert_eq!(picked, 8);
    let out = tempfile::tempdir().unwrap();
    let s = ingest(&["folder", p(src.path()), "--out", p(out.path()), "--store-raw"]);
    assert_eq!(s["records"], 8, "{s}");
    let ds = silt_shards::Dataset::open(out.path()).unwrap();
    for i in 0..ds.len() {
        let rec = ds.get(i).unwrap();
        assert_eq!(rec.content_type, silt_shards::ContentType::RawU8, "{}", rec.key);
        let orig = std::fs::read(src.path().join(rec.key)).unwrap();
        let want = turbojpeg::decompress(&orig, turbojpeg::PixelFormat::RGB).unwrap();
        assert_eq!((rec.width as usize, rec.height as usize), (want.width, want.height), "{}", rec.key);
        assert_eq!(rec.bytes, &want.pixels[..], "{}: stored pixels differ from the decode", rec.key);
    }
    let small = tempfile::tempdir().unwrap();
    ingest(&["folder", p(src.path()), "--out", p(small.path()), "--store-raw", "--resize-shorter", "64"]);
    let ds = silt_shards::Dataset::open(small.path()).unwrap();
    for i in 0..ds.len() {
        let rec = ds.get(i).unwrap();
        assert_eq!(rec.content_type, silt_shards::ContentType::RawU8);
        assert_eq!(rec.width.min(rec.height), 64, "{}", rec.key);
        assert_eq!(rec.bytes.len(), rec.width as usize * rec.height as usize * 3);
    }
}
