//! Arguments of `silt ingest` (also the stand-alone `silt-ingest` binary). Defined here, next to
//! the pipeline they configure, so both binaries share one definition and one `--help`.

use crate::fetch::RetryPolicy;
use crate::pipeline::{Options, Part};
use crate::source::{FolderSource, IdxSource, Source, TarSource, YfccSource, ZipSource, IMAGE_EXTENSIONS};
use crate::transform::TransformOptions;
use crate::validate::{CheckLevel, ValidateOptions};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(subcommand)]
    pub source: SourceArgs,
}

#[derive(Debug, Subcommand)]
pub enum SourceArgs {
    /// Image files under a directory (recursive; ImageFolder labels from the first sub-folder).
    Folder(FolderArgs),
    /// PIC's ImageNet-Zip: entries of a zip, labels from a `path<TAB>label` map.
    Zip(ZipArgs),
    /// YFCC100M: a metadata TSV or .npy id list, images fetched from an object store.
    Yfcc(YfccArgs),
    /// WebDataset tar shards: one item per sample's image, label from its `.cls` member.
    Tar(TarArgs),
    /// IDX files (MNIST, Fashion-MNIST): one grayscale PNG per image, labels from the labels file.
    Idx(IdxArgs),
    /// Combine the finished output directories of `--part i/n` runs into one dataset.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The part directories (all n of them).
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// New dataset directory (shards are hard-linked into it when possible).
    #[arg(long, short)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct FolderArgs {
    /// Root directory. With sub-folders, each is a class (sorted names -> labels 0, 1, ...).
    pub dir: PathBuf,
    /// File extensions to take (case-insensitive; `*` takes every file).
    #[arg(long, value_delimiter = ',', default_values_t = default_extensions())]
    pub extensions: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct ZipArgs {
    /// The zip archive (e.g. train.zip).
    #[arg(long = "zip")]
    pub zip: PathBuf,
    /// Map file with `relative/path<TAB>label` lines (e.g. train_map.txt); items follow its
    /// order. Without it: every image entry of the zip, unlabelled.
    #[arg(long)]
    pub map: Option<PathBuf>,
    /// Entry extensions to take when there is no map (case-insensitive).
    #[arg(long, value_delimiter = ',', default_values_t = default_extensions())]
    pub extensions: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct YfccArgs {
    /// The list: yfcc100m_dataset TSV (25 columns), `id<TAB>hash` TSV, or a .npy of photo ids.
    #[arg(long)]
    pub list: PathBuf,
    /// Where the images are: file:///dir/, s3://bucket/prefix (AWS_* variables for endpoint and
    /// credentials), http(s)://host/prefix.
    #[arg(long)]
    pub source: String,
    /// Object key per list entry; fields {id} {hash} {line} {ext} {download_url}, sliceable
    /// by characters as {hash[0:3]}.
    #[arg(long, default_value = crate::source::yfcc::DEFAULT_KEY_TEMPLATE)]
    pub key_template: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct TarArgs {
    /// Tar files, read in this order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Member extensions that are images (case-insensitive).
    #[arg(long, value_delimiter = ',', default_values_t = default_extensions())]
    pub extensions: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct IdxArgs {
    /// IDX images file (magic 2051: u8, N x rows x cols), e.g. train-images-idx3-ubyte; a name
    /// ending in .gz is decompressed (into memory, at most 4 GiB).
    #[arg(long)]
    pub images: PathBuf,
    /// IDX labels file (magic 2049: u8, N), e.g. train-labels-idx1-ubyte[.gz]; must hold as
    /// many labels as there are images. Without it the records are unlabelled.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Class names, one per line (line i names label i), written to the manifest; every label
    /// must have one. Without it the manifest names no classes and labels are not checked.
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// Take only the first N images [default: all].
    #[arg(long)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn default_extensions() -> Vec<String> {
    IMAGE_EXTENSIONS.iter().map(|s| s.to_string()).collect()
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Output dataset directory. Re-running the same command on it resumes.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Items fetched at once.
    #[arg(long, default_value_t = 64)]
    pub fetch_concurrency: usize,
    /// Retries of a failed fetch (exponential backoff with jitter).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds one fetch attempt may take.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// How hard to look at each image: `header` parses it, `full` decodes every pixel.
    #[arg(long, value_enum, default_value_t = CheckLevel::Header)]
    pub check: CheckLevel,
    /// Images with more pixels are quarantined before decoding (decompression bombs).
    #[arg(long, default_value_t = crate::validate::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Keep images whose content is another format than their extension says (PNG named .jpg).
    #[arg(long)]
    pub allow_format_mismatch: bool,
    /// Inputs larger than this many bytes are quarantined unread.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_bytes: u64,
    /// Target shard size in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub shard_size: u64,
    /// Also close a shard after this many records.
    #[arg(long)]
    pub shard_records: Option<u64>,
    /// Shard writers in parallel (1 with --deterministic).
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
    /// Byte-identical shards across runs and resumes (one writer, records in listing order).
    #[arg(long)]
    pub deterministic: bool,
    /// Ingest only part i of n (items whose listing index is i modulo n); ids stay global.
    #[arg(long, default_value = "0/1", value_parser = clap::value_parser!(Part))]
    pub part: Part,
    /// Duplicate detection: `exact` skips items whose bytes equal an earlier record's (BLAKE3);
    /// `perceptual` also skips near-duplicates (resized, re-encoded copies): a 64-bit pHash
    /// within --phash-threshold bits of an earlier record's; `none` keeps everything.
    #[arg(long, value_enum, default_value_t = DedupMode::Exact)]
    pub dedup: DedupMode,
    /// With --dedup perceptual: at most this many of the 64 pHash bits may differ (0-16).
    #[arg(long, default_value_t = crate::phash::DEFAULT_THRESHOLD,
          value_parser = clap::value_parser!(u32).range(0..=crate::phash::MAX_THRESHOLD as i64))]
    pub phash_threshold: u32,
    /// Same as --dedup none (kept for older scripts).
    #[arg(long, conflicts_with = "dedup")]
    pub no_dedup: bool,
    /// Stop (to resume later) when this many fetches in a row fail after their retries: the
    /// store is down. Items that failed to download are retried by the next run.
    #[arg(long, default_value_t = 100)]
    pub max_consecutive_failures: u64,
    /// Resize images whose shorter side is longer to this many pixels and store them as JPEG
    /// (smaller images are kept as they are).
    #[arg(long)]
    pub resize_shorter: Option<u32>,
    /// Store every image decoded, as RGB pixels (after --resize-shorter, if given): the loader
    /// skips decoding (FFCV's raw write mode), at about ten times the bytes of a JPEG.
    #[arg(long)]
    pub store_raw: bool,
    /// JPEG quality of images re-encoded by --resize-shorter.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub quality: i32,
    /// Threads for validation and re-encoding [default: the number of cores].
    #[arg(long)]
    pub cpu_threads: Option<usize>,
    /// After the ingest, publish the dataset to this object store URL (s3://bucket/prefix with
    /// the AWS_* variables, file:///dir/): shards by multipart upload, manifest.json last.
    /// Re-running skips shards already uploaded.
    #[arg(long)]
    pub upload: Option<String>,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or progress log lines.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DedupMode {
    /// Keep every item.
    None,
    /// Skip items whose bytes equal an earlier record's.
    Exact,
    /// Also skip items whose pHash is within --phash-threshold bits of an earlier record's.
    Perceptual,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl CommonArgs {
    pub fn options(&self) -> anyhow::Result<Options> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            anyhow::bail!("--timeout must be a positive number of seconds");
        }
        let defaults = Options::default();
        Ok(Options {
            out: self.out.clone(),
            fetch_concurrency: self.fetch_concurrency.max(1),
            cpu_threads: self.cpu_threads.unwrap_or(defaults.cpu_threads).max(1),
            retry: RetryPolicy { max_retries: self.retries, timeout: Duration::from_secs_f64(self.timeout), ..RetryPolicy::default() },
            validate: ValidateOptions {
                check: self.check,
                max_pixels: self.max_pixels,
                allow_format_mismatch: self.allow_format_mismatch,
            },
            max_bytes: self.max_bytes,
            shard_bytes: self.shard_size,
            shard_records: self.shard_records,
            writers: self.writers.max(1),
            deterministic: self.deterministic,
            part: self.part,
            dedup: !self.no_dedup && self.dedup != DedupMode::None,
            perceptual: (!self.no_dedup && self.dedup == DedupMode::Perceptual).then_some(self.phash_threshold),
            progress: !self.quiet,
            max_consecutive_failures: self.max_consecutive_failures,
            transform: (self.resize_shorter.is_some() || self.store_raw).then(|| TransformOptions {
                resize_shorter: self.resize_shorter.map(|n| n.max(1)),
                quality: self.quality,
                raw: self.store_raw,
            }),
        })
    }
}

impl IngestArgs {
    fn build(&self) -> anyhow::Result<(Arc<dyn Source>, &CommonArgs)> {
        Ok(match &self.source {
            SourceArgs::Folder(a) => {
                (Arc::new(FolderSource::new(&a.dir, a.extensions.clone())?), &a.common)
            }
            SourceArgs::Zip(a) => (Arc::new(ZipSource::open(&a.zip, a.map.clone(), &a.extensions)?), &a.common),
            SourceArgs::Tar(a) => {
                (Arc::new(TarSource::new(a.files.clone(), a.extensions.clone(), a.common.max_bytes)?), &a.common)
            }
            SourceArgs::Yfcc(a) => (Arc::new(YfccSource::new(&a.list, &a.source, &a.key_template)?), &a.common),
            SourceArgs::Idx(a) => (
                Arc::new(IdxSource::open(&a.images, a.labels.as_deref(), a.classes.as_deref(), a.limit)?),
                &a.common,
            ),
            SourceArgs::Merge(_) => anyhow::bail!("merge is not a source"),
        })
    }

    /// Runs the ingest on a new tokio runtime and writes the summary to `out`.
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        if let SourceArgs::Merge(m) = &self.source {
            let manifest = crate::merge::merge_parts(&m.parts, &m.out)?;
            writeln!(out, "merged {} parts: {} records in {} shards at {}", m.parts.len(), manifest.records, manifest.shards.len(), m.out.display())?;
            return Ok(ExitCode::SUCCESS);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
        let (summary, upload, json) = runtime.block_on(async {
            let (source, common) = self.build()?;
            let opts = common.options()?;
            let summary = crate::pipeline::run(source, &opts).await?;
            let upload = match &common.upload {
                Some(url) => Some(crate::upload::upload_dataset(&opts.out, url).await?),
                None => None,
            };
            Ok::<_, anyhow::Error>((summary, upload, common.json))
        })?;
        if json {
            let mut v = serde_json::to_value(&summary)?;
            if let Some(u) = &upload {
                v["upload"] = serde_json::to_value(u)?;
            }
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{}", summary.human())?;
            if let Some(u) = &upload {
                writeln!(out, "uploaded {} shards ({} bytes) to {}; {} were there already", u.shards_uploaded, u.bytes_uploaded, u.url, u.shards_already_there)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
