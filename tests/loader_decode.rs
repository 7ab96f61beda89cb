//! Decode: full, DCT-scaled and cropped JPEG decode on real photos, greyscale/CMYK to RGB,
//! raw MNIST records, and the bad-input corpus (skipped and counted, never a crash).

mod loader_common;
use loader_common::*;
use silt::loader::decode::{CpuDecoder, Decode, DecodeRequest, Rect};
use silt::loader::{cpu_decoder_factory, preset, run_epoch, LoaderConfig};
use silt_shards::{ContentType, Dataset, Record};
use std::sync::Arc;

fn jpeg(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join("photos").join(name)).unwrap()
}

fn rec<'a>(key: &'a str, bytes: &'a [u8]) -> Record<'a> {
    Record { id: 0, key, label: None, width: 0, height: 0, content_type: ContentType::sniff(bytes), bytes }
}

#[test]
fn full_decode_matches_turbojpeg_and_greyscale_comes_out_rgb() {
    let mut dec = CpuDecoder::new().unwrap();
    let photos = photos();
    for (name, w, h) in photos.iter().step_by(25) {
        let b = jpeg(name);
        let d = dec.decode(&rec(name, &b), &DecodeRequest::FULL).unwrap();
        assert_eq!((d.image.width, d.image.height), (*w, *h), "{name}");
        let reference = turbojpeg::decompress(&b, turbojpeg::PixelFormat::RGB).unwrap();
        assert!(d.image.pixels == reference.pixels, "{name}: pixels differ from turbojpeg::decompress");
    }
    let g = gray_photo().expect("a greyscale photo");
    let b = jpeg(&g);
    let d = dec.decode(&rec(&g, &b), &DecodeRequest::FULL).unwrap();
    assert_eq!(d.image.pixels.len(), 3 * d.image.width as usize * d.image.height as usize);
    assert!(d.image.pixels.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]), "greyscale JPEG must give R = G = B");
}

#[test]
fn scaled_decode_picks_the_smallest_covering_factor() {
    let mut dec = CpuDecoder::new().unwrap();
    let (name, w, h) = photos().into_iter().max_by_key(|p| p.1 as u64 * p.2 as u64).unwrap();
    let b = jpeg(&name);
    for (min_scale, eighths) in [(0.01, 1u32), (0.125, 1), (0.13, 2), (0.3, 3), (0.5, 4), (0.51, 5), (0.9, 8), (1.0, 8), (3.0, 8)] {
        let d = dec.decode(&rec(&name, &b), &DecodeRequest { min_scale, region: None }).unwrap();
        assert_eq!(d.image.width, (w * eighths).div_ceil(8), "{name} at {min_scale}");
        assert_eq!(d.image.height, (h * eighths).div_ceil(8), "{name} at {min_scale}");
        assert!(d.scale_x + 1e-9 >= min_scale.min(1.0));
        assert_eq!((d.full_width, d.full_height), (w, h));
    }
}

#[test]
fn cropped_decode_gives_the_same_pixels_as_cropping_the_scaled_image() {
    let mut dec = CpuDecoder::new().unwrap();
    let mut checked = 0;
    for (name, w, h) in photos().into_iter().filter(|p| p.1 >= 1000).take(12) {
        let b = jpeg(&name);
        let r = &rec(&name, &b);
        let region = Rect { x: w as f64 * 0.37, y: h as f64 * 0.41, w: w as f64 * 0.3, h: h as f64 * 0.25 };
        for min_scale in [0.25, 0.5, 1.0] {
            let whole = dec.decode(r, &DecodeRequest { min_scale, region: None }).unwrap();
            let part = dec.decode(r, &DecodeRequest { min_scale, region: Some(region) }).unwrap();
            assert!(part.image.width < whole.image.width && part.image.height < whole.image.height, "{name}: not cropped");
            // The decoded part covers the requested region.
            let m = part.map(&region);
            assert!(m.x >= 0.0 && m.y >= 0.0 && m.x + m.w <= part.image.width as f64 + 1.0 && m.y + m.h <= part.image.height as f64 + 1.0, "{name}: {m:?}");
            let ox = (part.origin_x * part.scale_x).round() as usize;
            let oy = (part.origin_y * part.scale_y).round() as usize;
            let (pw, ww) = (part.image.width as usize, whole.image.width as usize);
            let mut max = 0u8;
            let mut sum = 0u64;
            for y in 0..part.image.height as usize {
                for x in 0..pw * 3 {
                    let a = part.image.pixels[y * pw * 3 + x];
                    let c = whole.image.pixels[(oy + y) * ww * 3 + ox * 3 + x];
                    max = max.max(a.abs_diff(c));
                    sum += a.abs_diff(c) as u64;
                }
            }
            let mean = sum as f64 / part.image.pixels.len() as f64;
            // libjpeg-turbo decodes whole iMCU rows/columns; only chroma upsampling at the
            // region's edges may differ.
            assert!(mean < 0.5, "{name} at {min_scale}: cropped decode differs (mean {mean}, max {max})");
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

#[test]
fn cmyk_jpeg_decodes_to_rgb_close_to_its_png_twin() {
    let dir = data_dir().join("bad/go");
    let (jp, png) = (dir.join("testdata__video-001.cmyk.jpeg"), dir.join("testdata__video-001.cmyk.png"));
    if !jp.exists() {
        println!("SKIP: {} missing (get-real-data --with-bad-inputs)", jp.display());
        return;
    }
    let (jb, pb) = (std::fs::read(&jp).unwrap(), std::fs::read(&png).unwrap());
    let mut dec = CpuDecoder::new().unwrap();
    let a = dec.decode(&rec("cmyk", &jb), &DecodeRequest::FULL).unwrap().image;
    let b = dec.decode(&rec("png", &pb), &DecodeRequest::FULL).unwrap().image;
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mean = a.pixels.iter().zip(&b.pixels).map(|(x, y)| x.abs_diff(*y) as f64).sum::<f64>() / a.pixels.len() as f64;
    println!("CMYK JPEG vs PNG: mean abs diff {mean:.2}");
    assert!(mean < 8.0, "CMYK conversion is off: mean abs diff {mean}");
}

#[test]
fn raw_mnist_records_decode_as_grey() {
    let pixels: Vec<u8> = (0..28 * 28).map(|i| (i % 251) as u8).collect();
    let r = Record { id: 1, key: "mnist/0", label: Some(7), width: 28, height: 28, content_type: ContentType::RawU8, bytes: &pixels };
    let mut dec = CpuDecoder::new().unwrap();
    assert_eq!(dec.probe(&r).unwrap(), (28, 28));
    let d = dec.decode(&r, &DecodeRequest::FULL).unwrap().image;
    assert_eq!(d.pixels.len(), 28 * 28 * 3);
    for (i, p) in d.pixels.chunks_exact(3).enumerate() {
        assert_eq!(p, [pixels[i]; 3]);
    }
    let short = Record { bytes: &pixels[..100], ..r };
    assert!(dec.decode(&short, &DecodeRequest::FULL).is_err());
}

#[test]
fn bad_inputs_are_skipped_and_counted_never_a_crash() {
    let bad = data_dir().join("bad");
    let Ok(tsv) = std::fs::read_to_string(bad.join("bad.tsv")) else {
        println!("SKIP: bad/ corpus missing (get-real-data --with-bad-inputs)");
        return;
    };
    let files: Vec<String> = tsv.lines().skip(1).filter_map(|l| l.split('\t').next()).map(str::to_string).collect();
    assert!(files.len() > 1000);
    // Good photos mixed in, every 5th slot.
    let good: Vec<String> = photos().into_iter().step_by(20).map(|p| p.0).collect();
    let tmp = tempfile::tempdir().unwrap();
    let both = tmp.path().join("src");
    std::fs::create_dir_all(&both).unwrap();
    let mut all = vec![];
    for f in &files {
        let dst = format!("bad__{}", f.replace('/', "__"));
        std::fs::copy(bad.join(f), both.join(&dst)).unwrap();
        all.push(dst);
    }
    for g in &good {
        std::fs::copy(data_dir().join("photos").join(g), both.join(g)).unwrap();
        all.push(g.clone());
    }
    let out = tmp.path().join("ds");
    write_dataset(&out, &both, &all, 8 << 20);
    let ds = Arc::new(Dataset::open(&out).unwrap());
    let pipeline = Arc::new(preset("simclr").unwrap());
    let cfg = LoaderConfig { batch_size: 64, workers: 2, prefetch: 2, seed: 1, drop_last: false };
    let it = run_epoch(ds.clone(), pipeline, (0..ds.len()).collect(), 0, &cfg, cpu_decoder_factory(true));
    let stats = it.stats.clone();
    let (mut images, mut skipped, mut good_seen) = (0usize, 0usize, 0usize);
    for b in it {
        images += b.len();
        skipped += b.skipped;
        good_seen += b.indices.iter().filter(|&&i| ds.get(i).map(|r| !r.key.starts_with("bad__")).unwrap_or(false)).count();
        for v in &b.views {
            assert_eq!(v.data.len(), v.n * 3 * (v.size as usize).pow(2));
        }
    }
    println!("bad corpus: {} records, {images} decoded, {skipped} skipped", ds.len());
    assert_eq!(images + skipped, ds.len() as usize, "every record is either a sample or counted as skipped");
    assert_eq!(good_seen, good.len(), "every good photo survives");
    assert!(skipped > 100, "the corpus holds many undecodable files, only {skipped} skipped");
    assert_eq!(stats.skipped.load(std::sync::atomic::Ordering::Relaxed) as usize, skipped);
}
