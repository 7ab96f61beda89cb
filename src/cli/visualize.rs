//! `silt visualize top-images|filters`: what a trained network's filters respond to (DeepCluster
//! `visu/`, methods.md §3.6) — the images that activate each filter most or sit nearest each
//! cluster's mean, and images synthesised by gradient ascent on the input.

use super::network::{conv_layer, LoadedNetwork, NetworkArgs};
use crate::loader::{cpu_decoder_factory, run_epoch, LoaderConfig};
use crate::report::filters::{filter_images, AscentConfig};
use crate::report::grid::{image_grid, planar_image, save_png, zoom, Rgb8};
use crate::report::top_images::{nearest_to_cluster_means, top_per_column};
use crate::train::features::{eval_pipeline, extract_with, ExtractOptions};
use crate::train::run::device;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use silt_shards::Dataset;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tch::Kind;

#[derive(Debug, Args)]
pub struct VisualizeArgs {
    #[command(subcommand)]
    pub command: VisualizeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VisualizeCommand {
    /// A PNG grid, one row per filter (or cluster): the images with the highest mean activation of
    /// the filter (or nearest the cluster's mean feature), best first.
    TopImages(TopImagesArgs),
    /// A PNG grid of images synthesised by gradient ascent on the input, one per filter.
    Filters(FiltersArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Group {
    /// Rows are filters of --layer.
    Filter,
    /// Rows are clusters of --labels (by default the run's pseudo_labels.tsv), largest first.
    Cluster,
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Conv layer or ResNet stage (conv1, conv2, ...). Default: the last one.
    #[arg(long)]
    pub layer: Option<String>,
    /// Filters to draw, e.g. 0,5,17 (default: the first --max-filters).
    #[arg(long, value_delimiter = ',')]
    pub filters: Vec<i64>,
    #[arg(long, default_value_t = 16)]
    pub max_filters: usize,
    /// Upscale every image by this integer factor (default: enough to make it at least 96 pixels).
    #[arg(long)]
    pub zoom: Option<u32>,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TopImagesArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub select: Selection,
    /// Shards to search.
    #[arg(long)]
    pub data: PathBuf,
    /// Use only the first N records.
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value_t = Group::Filter)]
    pub by: Group,
    /// With --by cluster: a pseudo_labels.tsv (id, key, label; one row per record in dataset
    /// order, as `silt train` writes it). Default: RUN/pseudo_labels.tsv of --checkpoint.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Images per row (DeepCluster's --count 9).
    #[arg(long, default_value_t = 9)]
    pub count: usize,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long, default_value_t = std::thread::available_parallelism().map_or(2, |n| n.get()))]
    pub workers: usize,
}

#[derive(Debug, Args)]
pub struct FiltersArgs {
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub select: Selection,
    /// Gradient-ascent iterations (DeepCluster 1000; its README: conv1 30,000 at lr 3, conv5
    /// 3,000 at lr 30).
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    #[arg(long, default_value_t = 3.0)]
    pub lr: f64,
    #[arg(long, alias = "wd", default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Blur every this many iterations (0 = never).
    #[arg(long, default_value_t = 5)]
    pub blur_every: usize,
    #[arg(long, default_value_t = 0.3)]
    pub blur_sigma: f64,
    /// Side of the synthesised images (default: the network's crop).
    #[arg(long)]
    pub size: Option<u32>,
    /// Filters synthesised together in one batch.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
}

impl VisualizeArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            VisualizeCommand::TopImages(a) => a.run(out),
            VisualizeCommand::Filters(a) => a.run(out),
        }
    }
}

impl Selection {
    /// The conv layer index and the filters to draw, checked against the network.
    fn resolve(&self, net: &LoadedNetwork) -> anyhow::Result<(usize, String, Vec<i64>)> {
        let probe = tch::Tensor::zeros([1, 3, net.crop as i64, net.crop as i64], (Kind::Float, device()));
        let outs = tch::no_grad(|| net.trunk.conv_outputs(&probe, false));
        let name = self.layer.clone().unwrap_or_else(|| format!("conv{}", outs.len()));
        let layer = conv_layer(net.trunk.as_ref(), &name, net.crop).with_context(|| format!("--layer {name}"))?;
        let channels = outs[layer].size()[1];
        let filters = if self.filters.is_empty() { (0..channels.min(self.max_filters as i64)).collect() } else { self.filters.clone() };
        if let Some(f) = filters.iter().find(|&&f| f < 0 || f >= channels) {
            bail!("--filters: {name} has {channels} filters (0..{}), not {f}", channels - 1);
        }
        Ok((layer, name, filters))
    }

    fn zoom_for(&self, size: u32) -> u32 {
        self.zoom.unwrap_or_else(|| 96u32.div_ceil(size.max(1)).max(1))
    }

    fn save(&self, cells: Vec<Rgb8>, cols: usize, size: u32) -> anyhow::Result<()> {
        let z = self.zoom_for(size);
        let cells: Vec<Rgb8> = cells.into_iter().map(|c| zoom(c, z)).collect();
        save_png(&image_grid(&cells, cols, 2)?, &self.out)?;
        Ok(())
    }
}

impl TopImagesArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let net = self.net.load()?;
        let ds = Arc::new(Dataset::open(&self.data).with_context(|| format!("opening {}", self.data.display()))?);
        let n = self.limit.map_or(ds.len(), |l| l.min(ds.len()));
        let opts = ExtractOptions { crop: net.crop, batch_size: self.batch_size, workers: self.workers, device: device(), group: None };
        let trunk = net.trunk.as_ref();
        // Rows of the grid: (what the row is, the record indices to show).
        let (rows, what): (Vec<(String, Vec<usize>)>, String) = match self.by {
            Group::Filter => {
                let (layer, name, filters) = self.select.resolve(&net)?;
                let sel = tch::Tensor::from_slice(&filters).to_device(device());
                let fs = extract_with(&ds, n, &opts, &|x| trunk.conv_outputs(x, false)[layer].mean_dim([2i64, 3].as_slice(), false, Kind::Float).index_select(1, &sel))?;
                let top = top_per_column(&fs.features, &fs.valid, self.count)?;
                (filters.iter().zip(top).map(|(f, r)| (format!("filter {f}"), r)).collect(), format!("{name}, {} filters", filters.len()))
            }
            Group::Cluster => {
                let labels = read_pseudo_labels(&self.labels_path()?, &ds, n)?;
                let fs = extract_with(&ds, n, &opts, &|x| trunk.forward_t(x, false))?;
                let labels: Vec<i64> = labels.iter().zip(&fs.valid).map(|(&l, &v)| if v { l } else { -1 }).collect();
                let clusters = nearest_to_cluster_means(&fs.features, &labels, self.count, self.select.max_filters)?;
                let rows = clusters.iter().map(|c| (format!("cluster {} ({} images)", c.label, c.size), c.nearest.clone())).collect();
                (rows, format!("{} largest clusters", clusters.len()))
            }
        };
        let images = load_images(&ds, net.crop, rows.iter().flat_map(|r| r.1.iter().copied()).collect())?;
        let mut cells = Vec::new();
        for (_, idx) in &rows {
            for i in idx {
                cells.push(images.get(i).cloned().with_context(|| format!("record {i} decoded for scoring but not for drawing"))?);
            }
            // Short rows (a cluster smaller than --count) are padded with white cells.
            cells.extend((idx.len()..self.count).map(|_| (net.crop, net.crop, vec![255u8; (net.crop * net.crop * 3) as usize])));
        }
        self.select.save(cells, self.count, net.crop)?;
        if self.select.json {
            let rows: Vec<_> = rows.iter().map(|(w, idx)| json!({ "row": w, "records": idx })).collect();
            writeln!(out, "{}", json!({ "out": self.select.out, "model": net.source, "what": what, "rows": rows }))?;
        } else {
            writeln!(out, "wrote {} ({}: top {} of {n} images of {}; model {})", self.select.out.display(), what, self.count, self.data.display(), net.source)?;
        }
        Ok(ExitCode::SUCCESS)
    }

    fn labels_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.labels {
            return Ok(p.clone());
        }
        match &self.net.checkpoint {
            Some(c) if c.is_dir() => Ok(c.join("pseudo_labels.tsv")),
            Some(c) => Ok(c.parent().and_then(Path::parent).map(|run| run.join("pseudo_labels.tsv")).unwrap_or_default()),
            None => bail!("--by cluster needs --labels (or --checkpoint RUN_DIR with a pseudo_labels.tsv)"),
        }
    }
}

/// Labels of records 0..n from a pseudo_labels.tsv whose row i must be record i (its id and
/// key are checked, so a file from another dataset is refused rather than mislabelling images).
fn read_pseudo_labels(path: &Path, ds: &Dataset, n: u64) -> anyhow::Result<Vec<i64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading pseudo-labels {}", path.display()))?;
    let mut labels = vec![-1i64; n as usize];
    for (line_no, line) in text.lines().enumerate().skip(1) {
        let i = (line_no - 1) as u64;
        if i >= n {
            break;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(id), Some(label)) = (cols.first().and_then(|c| c.parse::<u64>().ok()), cols.last().and_then(|c| c.parse::<i64>().ok())) else {
            bail!("{}:{}: expected `id<TAB>key<TAB>label`, got {line:?}", path.display(), line_no + 1);
        };
        let rec = ds.get(i).with_context(|| format!("record {i} of {}", ds.dir().display()))?;
        let key = rec.key.replace(['\t', '\n'], " ");
        if rec.id != id || cols.len() != 3 || cols[1] != key {
            bail!("{}:{}: record {i} of {} is {} {key:?}, the file says {line:?}: these labels belong to another dataset", path.display(), line_no + 1, ds.dir().display(), rec.id);
        }
        labels[i as usize] = label;
    }
    Ok(labels)
}

/// The evaluation view (Resize + CenterCrop to `crop`) of the given records, as RGB images.
fn load_images(ds: &Arc<Dataset>, crop: u32, mut indices: Vec<usize>) -> anyhow::Result<HashMap<usize, Rgb8>> {
    indices.sort_unstable();
    indices.dedup();
    let cfg = LoaderConfig { batch_size: 64, workers: 1, prefetch: 1, seed: 0, drop_last: false };
    let mut images = HashMap::new();
    for batch in run_epoch(ds.clone(), Arc::new(eval_pipeline(crop)), indices.iter().map(|&i| i as u64).collect(), 0, &cfg, cpu_decoder_factory(true)) {
        let vb = &batch.views[0];
        for (k, &i) in batch.indices.iter().enumerate() {
            images.insert(i as usize, planar_image(&vb.data, vb.size, k)?);
        }
    }
    Ok(images)
}

impl FiltersArgs {
    fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let net = self.net.load()?;
        let (layer, name, filters) = self.select.resolve(&net)?;
        let size = self.size.unwrap_or(net.crop);
        let cfg = AscentConfig {
            size: size as i64,
            iterations: self.iterations,
            lr: self.lr,
            weight_decay: self.weight_decay,
            blur_every: self.blur_every,
            blur_sigma: self.blur_sigma,
            seed: self.net.seed,
            mean: crate::loader::presets::IMAGENET_MEAN,
            std: crate::loader::presets::IMAGENET_STD,
        };
        // Chunks of --batch filters ascend together; progress per chunk.
        let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(filters.len() as u64) } else { indicatif::ProgressBar::hidden() };
        let mut images = Vec::new();
        for chunk in filters.chunks(self.batch.max(1)) {
            images.extend(filter_images(net.trunk.as_ref(), layer, chunk, &cfg, device())?);
            bar.inc(chunk.len() as u64);
            if bar.is_hidden() {
                tracing::info!("{name}: {} of {} filters done ({} iterations each)", images.len(), filters.len(), self.iterations);
            }
        }
        bar.finish_and_clear();
        let dead: Vec<i64> = images.iter().filter(|i| i.dead).map(|i| i.filter).collect();
        let raised = images.iter().filter(|i| i.end_share > i.start_share).count();
        let cells: Vec<Rgb8> = images.iter().map(|i| (size, size, i.rgb.clone())).collect();
        let cols = (filters.len() as f64).sqrt().ceil() as usize;
        self.select.save(cells, cols, size)?;
        if self.select.json {
            let per: Vec<_> = images.iter().map(|i| json!({ "filter": i.filter, "start_share": i.start_share, "end_share": i.end_share, "dead": i.dead })).collect();
            writeln!(out, "{}", json!({ "out": self.select.out, "model": net.source, "layer": name, "iterations": self.iterations, "filters": per, "raised": raised }))?;
        } else {
            writeln!(out, "wrote {} ({name}: {} filters, {} iterations each; model {}); the ascent raised the share of the layer's activation of {raised} of them", self.select.out.display(), filters.len(), self.iterations, net.source)?;
            if !dead.is_empty() {
                writeln!(out, "filters silent (all activations 0) on the start image: {dead:?}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
