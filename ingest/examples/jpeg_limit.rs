//! The libjpeg-turbo limit of `silt ingest --resize-shorter N --quality Q` on one core: every
//! image silt would re-encode is decoded exactly as silt decodes it (libjpeg-turbo, scaled DCT)
//! and an image of the output size is encoded at quality Q (4:2:0, as silt writes). No resize,
//! no hashing, no shard writing and no file reads are timed: what silt spends above this rate
//! is its resize and its pipeline. Images silt keeps as they are cost nothing here.
//!
//! usage: cargo run --release -p silt-ingest --example jpeg_limit -- DIR [N=256] [Q=90]
//! prints one JSON line {tool, images, encoded, seconds} (benches/ingest-compare runs it).

use anyhow::Context;
use silt_ingest::transform::{decode_rgb, target_size};
use silt_ingest::validate::{validate, ValidateOptions};
use std::path::PathBuf;
use std::time::Instant;

fn files(dir: &PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().context("usage: jpeg_limit DIR [SHORTER] [QUALITY]")?);
    let shorter: u32 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let quality: i32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(90);
    let mut paths = Vec::new();
    files(&dir, &mut paths).with_context(|| format!("listing {}", dir.display()))?;
    paths.sort();
    let inputs: Vec<(String, Vec<u8>)> = paths
        .iter()
        .map(|p| Ok((p.to_string_lossy().into_owned(), std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)))
        .collect::<anyhow::Result<_>>()?;
    // silt ingest's defaults
    let opts = ValidateOptions::default();

    let start = Instant::now();
    let (mut images, mut encoded) = (0usize, 0usize);
    for (key, bytes) in &inputs {
        let Ok(info) = validate(key, bytes, &opts) else { continue };
        images += 1;
        if info.width.min(info.height) <= shorter {
            continue;
        }
        let (w, h, rgb) = decode_rgb(bytes, &info, shorter).map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        // the output size, cut out of the decoded pixels (the DCT scale keeps them at least as big)
        let (nw, nh) = target_size(info.width, info.height, shorter);
        let image = turbojpeg::Image {
            pixels: &rgb[..],
            width: nw.min(w) as usize,
            pitch: w as usize * 3,
            height: nh.min(h) as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = turbojpeg::compress(image, quality, turbojpeg::Subsamp::Sub2x2).with_context(|| format!("encoding {key}"))?;
        std::hint::black_box(jpeg);
        encoded += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({ "tool": "turbo-limit", "images": images, "encoded": encoded, "seconds": seconds }));
    Ok(())
}
