//! The GPU path of the loader (src/loader/gpu), checked where it can be without a GPU: the
//! batched tensor augmentations against the per-sample CPU ones on real photos (same draws,
//! pixels within a grey level or two), the device loader against the CPU loader batch for
//! batch, bad records, the JPEG frame scan against the photo table, and nvJPEG's loading. The
//! nvJPEG decode itself runs where libtorch sees a GPU and skips with a printed reason elsewhere.

mod loader_common;
use loader_common::*;
use silt::loader::augment::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, gaussian_blur, grayscale, rotate90};
use silt::loader::decode::{CpuDecoder, Decode, DecodeRequest, Rect, RgbImage};
use silt::loader::gpu::augment::{self as taug, DecodedBatch, Resample};
use silt::loader::gpu::nvjpeg::{batch_buffer, is_progressive};
use silt::loader::gpu::{DecodeMode, DeviceLoader, NvJpeg, NvJpegError, NvJpegLibrary};
use silt::loader::multicrop::Augmenter;
use silt::loader::workers::make_batch;
use silt::loader::{preset, LoaderStats};
use silt_shards::{ContentType, Dataset, Record};
use tch::{Device, Kind, Tensor};

/// Four real photos decoded at 1/8 scale, their top-left `side` x `side` corners (HWC).
fn small_photos(side: u32) -> Vec<RgbImage> {
    let mut dec = CpuDecoder::new().unwrap();
    photos()
        .iter()
        .filter(|(_, w, h)| *w >= 8 * side && *h >= 8 * side)
        .take(4)
        .map(|(f, _, _)| {
            let bytes = std::fs::read(data_dir().join("photos").join(f)).unwrap();
            let rec = Record { id: 0, key: f, label: None, width: 0, height: 0, content_type: ContentType::Jpeg, bytes: &bytes };
            let d = dec.decode(&rec, &DecodeRequest { min_scale: 0.125, region: None }).unwrap().image;
            let mut out = RgbImage::new(side, side);
            for y in 0..side as usize {
                let src = &d.pixels[y * d.width as usize * 3..][..side as usize * 3];
                out.pixels[y * side as usize * 3..][..side as usize * 3].copy_from_slice(src);
            }
            out
        })
        .collect()
}

/// HWC images -> float NCHW tensor.
fn to_tensor(imgs: &[RgbImage]) -> Tensor {
    let t: Vec<Tensor> = imgs.iter().map(|i| Tensor::from_slice(&i.pixels).view([i.height as i64, i.width as i64, 3]).permute([2, 0, 1])).collect();
    Tensor::stack(&t, 0).to_kind(Kind::Float)
}

/// (max abs difference, fraction of values that differ) between CPU images and a tensor.
fn diff(cpu: &[RgbImage], t: &Tensor) -> (f64, f64) {
    let d = (to_tensor(cpu) - t.to_kind(Kind::Float)).abs();
    (d.max().double_value(&[]), d.gt(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]))
}

#[test]
fn colour_ops_on_tensors_match_the_cpu_ops_per_sample() {
    let imgs = small_photos(96);
    assert_eq!(imgs.len(), 4, "need 4 photos of at least 768 px");
    let x = to_tensor(&imgs);
    let factors = [0.6f32, 1.0, 1.4, 0.2];
    let hues = [-0.4f32, 0.0, 0.13, 0.5];
    let f = Tensor::from_slice(&factors).view([4, 1, 1, 1]);
    let hf = Tensor::from_slice(&hues).view([4, 1, 1, 1]);
    type CpuOp = fn(&mut [u8], f32);
    let cases: Vec<(&str, CpuOp, Tensor, [f32; 4])> = vec![
        ("brightness", adjust_brightness, taug::adjust_brightness(&x, &f), factors),
        ("contrast", adjust_contrast, taug::adjust_contrast(&x, &f), factors),
        ("saturation", adjust_saturation, taug::adjust_saturation(&x, &f), factors),
        ("hue", adjust_hue, taug::adjust_hue(&x, &hf), hues),
    ];
    for (name, op, t, fs) in cases {
        let cpu: Vec<RgbImage> = imgs
            .iter()
            .zip(fs)
            .map(|(i, f)| {
                let mut c = i.clone();
                op(&mut c.pixels, f);
                c
            })
            .collect();
        let (max, frac) = diff(&cpu, &t);
        println!("{name}: max |cpu - tensor| = {max}, {:.4}% of values differ", frac * 100.0);
        assert!(max <= 1.0 && frac < 0.005, "{name}: max diff {max}, {frac} of values differ");
    }
    let cpu: Vec<RgbImage> = imgs
        .iter()
        .map(|i| {
            let mut c = i.clone();
            grayscale(&mut c.pixels);
            c
        })
        .collect();
    assert_eq!(diff(&cpu, &taug::grayscale(&x)).0, 0.0, "grayscale");
}

#[test]
fn blur_with_one_sigma_per_sample_matches_the_cpu_blur() {
    let imgs = small_photos(64);
    let sigmas = [0.1f32, 0.7, 1.3, 2.0];
    let t = taug::gaussian_blur(&to_tensor(&imgs), 9, &sigmas);
    let cpu: Vec<RgbImage> = imgs
        .iter()
        .zip(sigmas)
        .map(|(i, s)| {
            let mut c = i.clone();
            gaussian_blur(&mut c.pixels, 64, 64, 9, s);
            c
        })
        .collect();
    let (max, frac) = diff(&cpu, &t);
    println!("blur: max |cpu - tensor| = {max}, {:.4}% of values differ", frac * 100.0);
    assert!(max <= 1.0 && frac < 0.01, "max diff {max}, {frac} differ");
}

#[test]
fn batched_grid_sample_agrees_with_per_sample_crops_inside_the_crop() {
    let imgs = small_photos(96);
    let sizes: Vec<(u32, u32)> = imgs.iter().map(|i| (i.width, i.height)).collect();
    let mut pixels = batch_buffer(&sizes, Device::Cpu);
    pixels.copy_(&to_tensor(&imgs).to_kind(Kind::Uint8));
    let batch = DecodedBatch { pixels, sizes };
    // Crops smaller than the output (upsampling: no antialiasing filter involved).
    let rects: Vec<Rect> = (0..4).map(|k| Rect { x: 5.0 + 7.0 * k as f64, y: 11.0 + 3.0 * k as f64, w: 40.0 + 4.0 * k as f64, h: 36.0 + 5.0 * k as f64 }).collect();
    let aa = taug::resized_crops(&batch, &rects, 64, Resample::Antialias);
    let gs = taug::resized_crops(&batch, &rects, 64, Resample::Batched);
    // Edges differ by design (per-sample crops clamp at the crop, grid_sample reads past it).
    let inner = |t: &Tensor| t.narrow(2, 2, 60).narrow(3, 2, 60);
    let d = (inner(&aa) - inner(&gs)).abs();
    let max = d.max().double_value(&[]);
    println!("grid_sample vs per-sample bilinear, inside the crops: max diff {max}");
    assert!(max <= 1.0, "max diff {max}");
}

/// A dataset of `n` real photos of moderate size (full-size decodes stay quick).
fn photo_dataset(dir: &std::path::Path, n: usize) -> Dataset {
    let files: Vec<String> = photos().into_iter().filter(|(_, w, h)| (w * h) < 2_500_000).take(n).map(|p| p.0).collect();
    assert_eq!(files.len(), n);
    write_dataset(dir, &data_dir().join("photos"), &files, 1 << 30);
    Dataset::open(dir).unwrap()
}

#[test]
fn device_loader_batches_match_the_cpu_loader_for_the_same_draws() {
    let dir = tempfile::tempdir().unwrap();
    let ds = photo_dataset(dir.path(), 6);
    let indices: Vec<u64> = (0..6).collect();
    let (mut dev, fallback) = DeviceLoader::new(Device::Cpu, DecodeMode::Cpu).unwrap();
    assert!(fallback.is_none());
    for name in ["simclr", "moco-v1", "rotnet", "eval", "pic-multicrop"] {
        let pipeline = preset(name).unwrap();
        // The CPU loader decoding at full size, like the device loader does.
        let mut dec = CpuDecoder::new().unwrap();
        dec.reduce = false;
        let mut aug = Augmenter::new(Box::new(dec));
        let cpu = make_batch(&ds, &pipeline, &mut aug, &indices, 3, 11, 2, &LoaderStats::default());
        let gpu = dev.make_batch(&ds, &pipeline, &indices, 3, 11, 2);
        assert_eq!((&cpu.indices, &cpu.ids, &cpu.labels, cpu.skipped), (&gpu.indices, &gpu.ids, &gpu.labels, gpu.skipped), "{name}");
        for v in 0..cpu.views.len() {
            assert_eq!(cpu.views[v].rotation_labels, gpu.views[v].rotation_labels, "{name} view {v}");
            let (a, b) = (cpu.view_u8(v).to_kind(Kind::Float), gpu.view_u8(v).to_kind(Kind::Float));
            assert_eq!(a.size(), b.size(), "{name} view {v}");
            let d = (a - b).abs();
            let mean = d.mean(Kind::Float).double_value(&[]);
            let within2 = d.le(2.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
            println!("{name} view {v}: mean |cpu - device| {mean:.3} grey levels, {:.2}% within 2", within2 * 100.0);
            assert!(mean < 0.3 && within2 > 0.98, "{name} view {v}: mean diff {mean}, {within2} within 2");
        }
    }
    // RotNet's four images of a sample are exact quarter turns of the first.
    let rot = dev.make_batch(&ds, &preset("rotnet").unwrap(), &indices[..1], 0, 1, 0).view_u8(0);
    let base: Vec<u8> = Vec::<u8>::try_from(rot.get(0).permute([1, 2, 0]).contiguous().view([-1])).unwrap();
    for k in 1..4u8 {
        let mut want = vec![0u8; base.len()];
        rotate90(&base, 224, k, &mut want);
        let got: Vec<u8> = Vec::<u8>::try_from(rot.get(k as i64).permute([1, 2, 0]).contiguous().view([-1])).unwrap();
        assert!(got == want, "rotation {k}");
    }
}

#[test]
fn device_loader_skips_and_counts_records_no_decoder_reads() {
    let dir = tempfile::tempdir().unwrap();
    let bad_dir = data_dir().join("bad");
    let tsv = std::fs::read_to_string(bad_dir.join("bad.tsv")).expect("bad inputs missing: ops/get-data --with-bad-inputs");
    let rejects: Vec<String> = tsv.lines().skip(1).map(|l| l.split('\t').collect::<Vec<_>>()).filter(|r| r.get(3) == Some(&"reject")).map(|r| r[0].to_string()).take(12).collect();
    let good: Vec<String> = photos().into_iter().filter(|(_, w, h)| (w * h) < 2_500_000).take(3).map(|p| format!("../photos/{}", p.0)).collect();
    let files: Vec<String> = good.iter().chain(&rejects).cloned().collect();
    write_dataset(dir.path(), &bad_dir, &files, 1 << 30);
    let ds = Dataset::open(dir.path()).unwrap();
    let (mut dev, _) = DeviceLoader::new(Device::Cpu, DecodeMode::Auto).unwrap();
    let indices: Vec<u64> = (0..files.len() as u64).collect();
    let b = dev.make_batch(&ds, &preset("simclr").unwrap(), &indices, 0, 0, 0);
    println!("{} of {} records decoded, {} skipped", b.len(), files.len(), b.skipped);
    assert_eq!(b.len() + b.skipped, files.len());
    assert!(b.len() >= good.len() && b.skipped > 0, "len {} skipped {}", b.len(), b.skipped);
    assert_eq!(b.view_u8(0).size()[0] as usize, b.len());
}

#[test]
fn sof_scan_finds_progressive_jpegs_as_the_photo_table_says() {
    let tsv = std::fs::read_to_string(data_dir().join("photos/photos.tsv")).unwrap();
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let (f, sof) = (header.iter().position(|h| *h == "file").unwrap(), header.iter().position(|h| *h == "sof").unwrap());
    let (mut n, mut progressive) = (0, 0);
    for row in lines.map(|l| l.split('\t').collect::<Vec<_>>()) {
        let bytes = std::fs::read(data_dir().join("photos").join(row[f])).unwrap();
        let want = row[sof] == "progressive";
        assert_eq!(is_progressive(&bytes), Some(want), "{}", row[f]);
        n += 1;
        progressive += want as usize;
    }
    println!("{n} photos, {progressive} progressive: all classified as photos.tsv says");
    assert!(n >= 40 && progressive > 0, "{n} photos, {progressive} progressive");
    assert_eq!(is_progressive(b"not a jpeg"), None);
    assert_eq!(is_progressive(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
}

#[test]
fn nvjpeg_loads_at_run_time_and_says_why_it_cannot_decode_here() {
    match NvJpegLibrary::load() {
        Ok(lib) => println!("nvJPEG loaded from {} (all entry points resolved)", lib.path.display()),
        // ops/setup installs the nvidia-nvjpeg wheel; elsewhere the error must say what to do.
        Err(e) => {
            let msg = e.to_string();
            println!("nvJPEG not loadable here: {msg}");
            assert!(msg.contains("SILT_NVJPEG"), "{msg}");
        }
    }
    assert!(matches!(NvJpeg::open(Device::Cpu), Err(NvJpegError::NoCuda)));
    if !tch::Cuda::is_available() {
        let (dev, why) = DeviceLoader::new(Device::Cpu, DecodeMode::Auto).unwrap();
        assert!(dev.gpu_backend().is_none() && why.is_some());
        assert!(DeviceLoader::new(Device::Cpu, DecodeMode::Gpu).is_err());
        println!("SKIP nvJPEG decode: libtorch sees no CUDA device (auto falls back: {})", why.unwrap_or_default());
        return;
    }
    // On a GPU: nvJPEG's pixels against libjpeg-turbo's for real baseline and progressive photos.
    let dir = tempfile::tempdir().unwrap();
    let ds = photo_dataset(dir.path(), 16);
    let (mut dev, _) = DeviceLoader::new(Device::Cuda(0), DecodeMode::Gpu).unwrap();
    let (mut cpu, _) = DeviceLoader::new(Device::Cuda(0), DecodeMode::Cpu).unwrap();
    let pipeline = preset("eval").unwrap();
    let idx: Vec<u64> = (0..16).collect();
    let (a, b) = (dev.make_batch(&ds, &pipeline, &idx, 0, 0, 0), cpu.make_batch(&ds, &pipeline, &idx, 0, 0, 0));
    let d = (a.view_u8(0).to_kind(Kind::Float) - b.view_u8(0).to_kind(Kind::Float)).abs().mean(Kind::Float).double_value(&[]);
    let gpu = dev.stats.gpu_decoded.load(std::sync::atomic::Ordering::Relaxed);
    println!("nvJPEG ({:?} backend) decoded {gpu} of 16; mean |nvjpeg - libjpeg-turbo| after eval crop: {d:.3}", dev.gpu_backend());
    assert!(gpu > 0 && d < 2.0, "gpu {gpu} diff {d}");
}

#[test]
fn loader_bench_runs_the_device_loader_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    photo_dataset(dir.path(), 4);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
        .args(["loader", "bench", "--shards", dir.path().to_str().unwrap(), "--preset", "moco-v2", "--batch", "2", "--device", "cpu", "--decode", "auto", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{v}");
    assert_eq!(v["images"], 4);
    assert_eq!(v["batches"], 2);
    assert_eq!(v["cpu_decoded"].as_u64().unwrap() + v["gpu_decoded"].as_u64().unwrap(), 4);
}

#[test]
fn train_decode_gpu_is_a_clear_error_without_cuda_and_auto_falls_back() {
    if tch::Cuda::is_available() {
        println!("SKIP: a CUDA device is present (this checks the machines without one)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    photo_dataset(&dir.path().join("data"), 8);
    let train = |decode: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_silt"))
            .args(["train", dir.path().join("data").to_str().unwrap(), "--method", "rotnet", "--arch", "small", "--crop", "28", "--batch-size", "4"])
            .args(["--epochs", "1", "--max-steps", "1", "--workers", "1", "--decode", decode, "--run-dir", dir.path().join(format!("run-{decode}")).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let gpu = train("gpu");
    let err = String::from_utf8_lossy(&gpu.stderr);
    println!("--decode gpu: {}", err.trim());
    assert!(!gpu.status.success() && err.contains("--decode gpu") && err.contains("no CUDA device"), "{err}");
    let auto = train("auto");
    assert!(auto.status.success(), "{}", String::from_utf8_lossy(&auto.stderr));
}
