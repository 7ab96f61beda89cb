//! The loader's per-pixel augmentation kernels on a real 224 x 224 crop, in each build this CPU
//! can run (baseline SSE2, AVX2, AVX-512; see `src/loader/simd.rs`), side by side in one run.
//!
//! Data: the first real photo of `ops/get-data` (SILT_DATA, default ~/.cache/silt/data/photos).
//! Run: `cargo bench --bench augment_kernels` (criterion prints the time per 224 x 224 view).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use silt::loader::augment::{adjust_hue_at, adjust_saturation_at, gaussian_blur_at, grayscale_at};
use silt::loader::simd::{cpu_level, Level};
use std::path::PathBuf;

const SIDE: usize = 224;

/// A 224 x 224 RGB crop from the middle of the first real JPEG photo.
fn real_crop() -> Vec<u8> {
    let root = std::env::var_os("SILT_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/silt/data"));
    let photos = root.join("photos");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap_or_else(|e| panic!("{}: {e} (run ops/get-data)", photos.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg" || x == "jpeg"))
        .collect();
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).expect("read photo");
        let Ok(img) = turbojpeg::decompress(&bytes, turbojpeg::PixelFormat::RGB) else { continue };
        if img.width < SIDE || img.height < SIDE {
            continue;
        }
        let (x0, y0) = ((img.width - SIDE) / 2, (img.height - SIDE) / 2);
        let mut crop = Vec::with_capacity(SIDE * SIDE * 3);
        for y in y0..y0 + SIDE {
            crop.extend_from_slice(&img.pixels[y * img.pitch + x0 * 3..y * img.pitch + (x0 + SIDE) * 3]);
        }
        return crop;
    }
    panic!("no JPEG of at least {SIDE} x {SIDE} in {}", photos.display());
}

fn kernels(c: &mut Criterion) {
    let crop = real_crop();
    type Kernel = fn(Level, &mut [u8]);
    let cases: [(&str, Kernel); 4] = [
        ("grayscale", |l, p| grayscale_at(l, p)),
        ("saturation", |l, p| adjust_saturation_at(l, p, 1.5)),
        ("hue", |l, p| adjust_hue_at(l, p, 0.1)),
        // SimCLR's kernel for 224 (23 taps), sigma in the middle of its range
        ("blur", |l, p| gaussian_blur_at(l, p, SIDE, SIDE, 23, 1.0)),
    ];
    let mut group = c.benchmark_group("augment_224");
    for (name, kernel) in cases {
        for level in Level::ALL.into_iter().filter(|&l| l <= cpu_level()) {
            group.bench_function(format!("{name}/{}", level.name()), |b| b.iter_batched_ref(|| crop.clone(), |p| kernel(level, p), BatchSize::SmallInput));
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
