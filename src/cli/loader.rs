//! `silt loader ...`: measure the loader and look at what it produces.

use super::cluster::DeviceArg;
use crate::loader::gpu::{run_device_epoch, DecodeMode, DeviceLoader, Resample};
use crate::loader::{cpu_decoder_factory, preset, presets::PRESETS, run_epoch, LoaderConfig, Sampler, SamplerKind};
use crate::report::grid::{image_grid, planar_image};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use silt_shards::Dataset;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct LoaderArgs {
    #[command(subcommand)]
    pub command: LoaderCommand,
}

#[derive(Debug, Subcommand)]
pub enum LoaderCommand {
    /// Run the loader over a dataset and report images/s and per-stage times.
    Bench(BenchArgs),
    /// Draw a grid of augmented views (one row per image, one column per view) to a PNG.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Dataset directory (with manifest.json).
    #[arg(long)]
    pub shards: PathBuf,
    /// Augmentation preset: deepcluster, rotnet, moco-v1, moco-v2, simclr, pic, pic-multicrop,
    /// swav-multicrop, eval.
    #[arg(long, default_value = "simclr")]
    pub preset: String,
    /// Samples per batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Decode/augment worker threads.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Stop after this many samples (0 = one whole epoch); cycles epochs if larger than the dataset.
    #[arg(long, default_value_t = 0)]
    pub limit_images: u64,
    /// Batches prefetched ahead of the consumer.
    #[arg(long, default_value_t = 4)]
    pub prefetch: usize,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Decode every image at full size (no DCT scaling, no cropped decode).
    #[arg(long)]
    pub no_reduce: bool,
    /// Only decode JPEGs at full size with libjpeg-turbo (the reference rate), no augmentation.
    #[arg(long)]
    pub decode_only: bool,
    /// Also build the uint8 NCHW tch tensors of every batch.
    #[arg(long)]
    pub tensors: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Make the batches with the device loader on this device (auto = the GPU when libtorch sees
    /// one): decode per --decode, then the augmentations as batched tensor ops, views left on the
    /// device. Without it: the CPU worker pool.
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// With --device: where JPEGs are decoded (gpu = nvJPEG, cpu = libjpeg-turbo, auto = nvJPEG
    /// when a CUDA device and the library are there).
    #[arg(long, value_enum, default_value_t = DecodeMode::Auto)]
    pub decode: DecodeMode,
    /// With --device: how crops are resampled (antialias = as the CPU loader; batched = one
    /// grid_sample for the whole batch).
    #[arg(long, value_enum, default_value_t = Resample::Antialias)]
    pub resample: Resample,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Dataset directory (with manifest.json).
    #[arg(long)]
    pub shards: PathBuf,
    /// Augmentation preset (see `silt loader bench --help`).
    #[arg(long, default_value = "simclr")]
    pub preset: String,
    /// How many images (rows).
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Sampler seed (shuffled order) and augmentation seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epoch (changes the random draws).
    #[arg(long, default_value_t = 0)]
    pub epoch: u64,
    /// Output PNG.
    #[arg(long, default_value = "grid.png")]
    pub out: PathBuf,
}

impl LoaderArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            LoaderCommand::Bench(a) => a.run(out),
            LoaderCommand::Show(a) => a.run(out),
        }
    }
}

fn load_preset(name: &str) -> anyhow::Result<crate::loader::Pipeline> {
    match preset(name) {
        Some(p) => Ok(p),
        None => bail!("unknown preset {name:?} (one of {})", PRESETS.join(", ")),
    }
}

impl BenchArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let ds = Arc::new(Dataset::open(&self.shards).with_context(|| format!("opening {}", self.shards.display()))?);
        if ds.is_empty() {
            bail!("{} holds no records", self.shards.display());
        }
        let pipeline = Arc::new(load_preset(&self.preset)?);
        let limit = if self.limit_images == 0 { ds.len() } else { self.limit_images };
        let sampler = Sampler::new(SamplerKind::Shuffle, ds.len(), self.seed, 0, 1)?;
        if self.decode_only {
            return self.run_decode_only(&ds, &sampler, limit, out);
        }
        if let Some(device) = self.device {
            return self.run_device(ds, pipeline, &sampler, limit, device, out);
        }
        let cfg = LoaderConfig { batch_size: self.batch, workers: self.workers, prefetch: self.prefetch, seed: self.seed, drop_last: false };
        let t0 = Instant::now();
        let (mut images, mut skipped, mut batches) = (0u64, 0u64, 0u64);
        let (mut decode_ns, mut augment_ns, mut assemble_ns) = (0u64, 0u64, 0u64);
        let mut tensor_s = 0f64;
        let mut epoch = 0;
        while images + skipped < limit {
            let mut idx = sampler.epoch_indices(epoch);
            idx.truncate((limit - images - skipped) as usize);
            let mut it = run_epoch(ds.clone(), pipeline.clone(), idx, epoch, &cfg, cpu_decoder_factory(!self.no_reduce));
            for b in it.by_ref() {
                if self.tensors {
                    let t = Instant::now();
                    for v in 0..b.views.len() {
                        let _ = b.view_u8(v);
                    }
                    tensor_s += t.elapsed().as_secs_f64();
                }
                images += b.len() as u64;
                skipped += b.skipped as u64;
                batches += 1;
            }
            decode_ns += it.stats.decode_ns.load(Ordering::Relaxed);
            augment_ns += it.stats.augment_ns.load(Ordering::Relaxed);
            assemble_ns += it.stats.assemble_ns.load(Ordering::Relaxed);
            epoch += 1;
        }
        let secs = t0.elapsed().as_secs_f64();
        let per_image = |ns: u64| ns as f64 / 1e6 / images.max(1) as f64;
        let views: usize = pipeline.views.iter().map(|v| v.count * v.images_per_view()).sum();
        let report = json!({
            "preset": self.preset,
            "images": images,
            "views_per_image": views,
            "skipped": skipped,
            "batches": batches,
            "seconds": secs,
            "images_per_sec": images as f64 / secs,
            "workers": self.workers,
            "batch": self.batch,
            "reduce": !self.no_reduce,
            "stage_ms_per_image": {
                "decode": per_image(decode_ns),
                "augment": per_image(augment_ns),
                "assemble": per_image(assemble_ns),
                "tensor": tensor_s * 1e3 / images.max(1) as f64,
            },
        });
        if self.json {
            writeln!(out, "{report}")?;
        } else {
            writeln!(out, "{} images ({} views each, {} skipped) in {:.2} s: {:.1} images/s with {} workers", images, views, skipped, secs, images as f64 / secs, self.workers)?;
            writeln!(
                out,
                "per image (summed over workers): decode {:.2} ms, augment {:.2} ms, assemble {:.3} ms",
                per_image(decode_ns),
                per_image(augment_ns),
                per_image(assemble_ns)
            )?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The device loader: batches made by [`DeviceLoader`] on `device`, consumed as they come.
    fn run_device(&self, ds: Arc<Dataset>, pipeline: Arc<crate::loader::Pipeline>, sampler: &Sampler, limit: u64, device: DeviceArg, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let dev = device.resolve()?;
        let (mut loader, fallback) = DeviceLoader::new(dev, self.decode).context("--decode gpu")?;
        loader.resample = self.resample;
        let decoder = match (loader.gpu_backend(), &fallback) {
            (Some(b), _) => format!("nvjpeg ({b} backend)"),
            (None, Some(why)) => format!("cpu (nvJPEG not used: {why})"),
            (None, None) => "cpu".to_string(),
        };
        if !self.json {
            writeln!(out, "device {dev:?}, decode: {decoder}")?;
        }
        let stats = loader.stats.clone();
        let loader = Arc::new(std::sync::Mutex::new(loader));
        let t0 = Instant::now();
        let (mut images, mut skipped, mut batches, mut epoch) = (0u64, 0u64, 0u64, 0u64);
        while images + skipped < limit {
            let mut idx = sampler.epoch_indices(epoch);
            idx.truncate((limit - images - skipped) as usize);
            for b in run_device_epoch(loader.clone(), ds.clone(), pipeline.clone(), idx, epoch, self.batch, self.seed, self.prefetch) {
                // The consumer's side of a training step: the views in the model's input form.
                for v in 0..b.views.len() {
                    let _ = b.view_f32(v, pipeline.mean, pipeline.std, dev);
                }
                images += b.len() as u64;
                skipped += b.skipped as u64;
                batches += 1;
            }
            epoch += 1;
        }
        if let tch::Device::Cuda(i) = dev {
            tch::Cuda::synchronize(i as i64);
        }
        let secs = t0.elapsed().as_secs_f64();
        let ms = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6 / images.max(1) as f64;
        let report = json!({
            "preset": self.preset,
            "device": format!("{dev:?}"),
            "decode": decoder,
            "resample": format!("{:?}", self.resample).to_lowercase(),
            "images": images,
            "skipped": skipped,
            "batches": batches,
            "gpu_decoded": stats.gpu_decoded.load(Ordering::Relaxed),
            "cpu_decoded": stats.cpu_decoded.load(Ordering::Relaxed),
            "seconds": secs,
            "images_per_sec": images as f64 / secs,
            "batch": self.batch,
            "stage_ms_per_image": { "decode": ms(&stats.decode_ns), "augment": ms(&stats.augment_ns) },
        });
        if self.json {
            writeln!(out, "{report}")?;
        } else {
            writeln!(out, "{images} images ({skipped} skipped) in {secs:.2} s: {:.1} images/s", images as f64 / secs)?;
            writeln!(out, "per image: decode {:.2} ms, augment {:.2} ms (host time of the loader thread)", ms(&stats.decode_ns), ms(&stats.augment_ns))?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The reference rate: full-size libjpeg-turbo decode to RGB of the same records, on
    /// `workers` threads, nothing else.
    fn run_decode_only(&self, ds: &Arc<Dataset>, sampler: &Sampler, limit: u64, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let mut idx: Vec<u64> = Vec::new();
        let mut epoch = 0;
        while (idx.len() as u64) < limit {
            idx.extend(sampler.epoch_indices(epoch));
            epoch += 1;
        }
        idx.truncate(limit as usize);
        let idx = Arc::new(idx);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..self.workers.max(1))
            .map(|_| {
                let (ds, idx, next) = (ds.clone(), idx.clone(), next.clone());
                std::thread::spawn(move || {
                    let (mut ok, mut bad) = (0u64, 0u64);
                    let mut dec = match turbojpeg::Decompressor::new() {
                        Ok(d) => d,
                        Err(_) => return (0, idx.len() as u64),
                    };
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = idx.get(k) else { return (ok, bad) };
                        let done = ds.get(i).ok().and_then(|r| {
                            let h = dec.read_header(r.bytes).ok()?;
                            let mut img = turbojpeg::Image { pixels: vec![0u8; 3 * h.width * h.height], width: h.width, pitch: 3 * h.width, height: h.height, format: turbojpeg::PixelFormat::RGB };
                            dec.decompress(r.bytes, img.as_deref_mut()).ok()
                        });
                        if done.is_some() {
                            ok += 1
                        } else {
                            bad += 1
                        }
                    }
                })
            })
            .collect();
        let (mut images, mut skipped) = (0u64, 0u64);
        for h in handles {
            let (o, b) = h.join().unwrap_or((0, 0));
            images += o;
            skipped += b;
        }
        let secs = t0.elapsed().as_secs_f64();
        let report = json!({"mode": "decode-only", "images": images, "skipped": skipped, "seconds": secs, "images_per_sec": images as f64 / secs, "workers": self.workers});
        if self.json {
            writeln!(out, "{report}")?;
        } else {
            writeln!(out, "decode only: {images} images in {secs:.2} s: {:.1} images/s with {} workers", images as f64 / secs, self.workers)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl ShowArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let ds = Arc::new(Dataset::open(&self.shards).with_context(|| format!("opening {}", self.shards.display()))?);
        let pipeline = Arc::new(load_preset(&self.preset)?);
        let sampler = Sampler::new(SamplerKind::Shuffle, ds.len(), self.seed, 0, 1)?;
        let mut idx = sampler.epoch_indices(self.epoch);
        idx.truncate(self.images);
        let cfg = LoaderConfig { batch_size: self.images.max(1), workers: 1, prefetch: 1, seed: self.seed, drop_last: false };
        let batch = match run_epoch(ds, pipeline.clone(), idx, self.epoch, &cfg, cpu_decoder_factory(true)).next() {
            Some(b) if !b.is_empty() => b,
            _ => bail!("no image could be decoded"),
        };
        // Columns: every image of every view slot (4 per view with rotations).
        let cols: Vec<(usize, usize)> = batch.views.iter().enumerate().flat_map(|(v, vb)| (0..vb.n / batch.len()).map(move |r| (v, r))).collect();
        let mut cells = Vec::with_capacity(batch.len() * cols.len());
        for row in 0..batch.len() {
            for &(v, r) in &cols {
                let vb = &batch.views[v];
                cells.push(planar_image(&vb.data, vb.size, row * (vb.n / batch.len()) + r)?);
            }
        }
        let grid = image_grid(&cells, cols.len(), 2)?;
        grid.save(&self.out).with_context(|| format!("writing {}", self.out.display()))?;
        writeln!(out, "wrote {} ({} images x {} views, preset {})", self.out.display(), batch.len(), cols.len(), self.preset)?;
        Ok(ExitCode::SUCCESS)
    }
}
