//! `silt shards ...`: look at, check and share out shard datasets.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;
use silt_shards::{
    check_shard, format, Dataset, DatasetWriter, DatasetWriterOptions, Manifest, PartitionMode,
    Record, ShardReader,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ShardsArgs {
    #[command(subcommand)]
    pub command: ShardsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShardsCommand {
    /// Show the header, footer and first records of one shard file, or a dataset's manifest.
    Inspect(InspectArgs),
    /// Check every record CRC, index, footer and the manifest; exit 1 if anything is wrong.
    Verify(VerifyArgs),
    /// Dataset statistics: records, bytes, labels, content types, image sizes.
    Stats(StatsArgs),
    /// One line per record: global index, id, key, label, width x height, bytes, shard.
    Ls(LsArgs),
    /// Write one record's payload to stdout or a file.
    Cat(CatArgs),
    /// Which shards each rank reads for a given world size.
    Partition(PartitionArgs),
    /// Combine part datasets (e.g. from `silt ingest --part i/n`) into one new dataset; shard
    /// files are hard-linked (copied across file systems). Refuses overlapping record ids.
    Merge(MergeArgs),
    /// Clean up after a crashed writer: remove temporary files, add complete shards missing from
    /// the manifest, set aside shards that fail verification.
    Repair(RepairArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A shard file (*.silt) or a dataset directory (with manifest.json).
    pub path: PathBuf,
    /// How many records to show.
    #[arg(long, default_value_t = 5)]
    pub records: u64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Dataset directories or single shard files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object per path.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Dataset directory.
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Dataset directory.
    pub dir: PathBuf,
    /// Stop after this many records (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["index", "id", "key"])))]
pub struct CatArgs {
    /// Dataset directory.
    pub dir: PathBuf,
    /// Global record index (0-based, manifest order).
    #[arg(long)]
    pub index: Option<u64>,
    /// Record id.
    #[arg(long)]
    pub id: Option<u64>,
    /// Record key (source path or object key).
    #[arg(long)]
    pub key: Option<String>,
    /// Write here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// Dataset directory.
    pub dir: PathBuf,
    /// Number of ranks.
    #[arg(long)]
    pub world: usize,
    /// Show only this rank (default: all).
    #[arg(long)]
    pub rank: Option<usize>,
    /// contiguous: balanced contiguous shard ranges (cache-mode part); interleaved: round robin.
    #[arg(long, default_value = "contiguous")]
    pub mode: PartitionMode,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The new dataset directory (must not hold shards yet).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Part dataset directories, in the order their records should come.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Dataset directory.
    pub dir: PathBuf,
}

impl ShardsArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        match &self.command {
            ShardsCommand::Inspect(a) => inspect(a, out),
            ShardsCommand::Verify(a) => verify(a, out),
            ShardsCommand::Stats(a) => stats(a, out),
            ShardsCommand::Ls(a) => ls(a, out),
            ShardsCommand::Cat(a) => cat(a, out),
            ShardsCommand::Partition(a) => partition(a, out),
            ShardsCommand::Merge(a) => merge(a, out),
            ShardsCommand::Repair(a) => repair(a, out),
        }
    }
}

fn open(dir: &Path) -> anyhow::Result<Dataset> {
    Dataset::open(dir).with_context(|| format!("cannot open dataset {}", dir.display()))
}

fn label_text(label: Option<i64>) -> String {
    label.map_or_else(|| "-".into(), |l| l.to_string())
}

fn print_record(out: &mut dyn Write, i: u64, r: &Record<'_>) -> std::io::Result<()> {
    writeln!(
        out,
        "  [{i}] id={} key={:?} label={} {}x{} {} {} bytes",
        r.id,
        r.key,
        label_text(r.label),
        r.width,
        r.height,
        r.content_type.name(),
        r.bytes.len()
    )
}

fn inspect(a: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if a.path.is_dir() {
        let m = Manifest::load(&a.path)?;
        writeln!(out, "dataset {}", a.path.display())?;
        writeln!(out, "  manifest version {}, shard format {}, created by {}", m.version, m.shard_format, m.created_by)?;
        writeln!(out, "  {} shards, {} records, {} bytes ({} payload)", m.shards.len(), m.records, m.bytes, m.payload_bytes)?;
        if let Some(c) = &m.classes {
            writeln!(out, "  {} classes: {}", c.len(), c.iter().take(10).cloned().collect::<Vec<_>>().join(", "))?;
        }
        if !m.params.is_empty() {
            writeln!(out, "  params: {}", serde_json::Value::Object(m.params.clone()))?;
        }
        for s in m.shards.iter().take(a.records as usize) {
            writeln!(out, "  {}  {} records  {} bytes  crc32c {:08x}", s.file, s.records, s.bytes, s.crc32c)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = ShardReader::open(&a.path)?;
    writeln!(out, "shard {}", a.path.display())?;
    writeln!(out, "  format {}.{}", format::VERSION_MAJOR, r.minor_version())?;
    writeln!(out, "  {} records, {} file bytes, {} payload bytes", r.len(), r.file_bytes(), r.payload_bytes())?;
    for i in 0..r.len().min(a.records) {
        print_record(out, i, &r.record(i)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: &VerifyArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    for path in &a.paths {
        let report = if path.is_dir() {
            verify_with_progress(path)?
        } else {
            let (entry, problems) = check_shard(path);
            silt_shards::VerifyReport {
                shards: 1,
                records: entry.as_ref().map_or(0, |e| e.records),
                bytes: entry.as_ref().map_or(0, |e| e.bytes),
                problems,
            }
        };
        all_ok &= report.ok();
        if a.json {
            let mut v = serde_json::to_value(&report)?;
            v["path"] = json!(path);
            v["ok"] = json!(report.ok());
            writeln!(out, "{v}")?;
        } else {
            for p in &report.problems {
                writeln!(out, "{}: {p}", path.display())?;
            }
            writeln!(
                out,
                "{}: {} ({} shards, {} records, {} bytes, {} problems)",
                path.display(),
                if report.ok() { "OK" } else { "CORRUPT" },
                report.shards,
                report.records,
                report.bytes,
                report.problems.len()
            )?;
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A byte-based progress bar on a terminal; otherwise a log line every 5% of the bytes.
fn verify_with_progress(dir: &Path) -> anyhow::Result<silt_shards::VerifyReport> {
    let total = Manifest::load(dir).map(|m| m.bytes).unwrap_or(0);
    let mut bar = crate::cli::progress::bytes_bar(total, &format!("verify {}", dir.display()));
    let report = silt_shards::verify_dataset_with_progress(dir, |shard, bytes| bar.advance(shard, bytes));
    bar.finish();
    Ok(report)
}

fn stats(a: &StatsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let ds = open(&a.dir)?;
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut types: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut widths, mut heights, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for shard in ds.shards() {
        for r in shard.iter() {
            let r = r?;
            *labels.entry(label_text(r.label)).or_default() += 1;
            *types.entry(r.content_type.name()).or_default() += 1;
            widths.push(r.width);
            heights.push(r.height);
            sizes.push(r.bytes.len() as u64);
        }
    }
    let m = ds.manifest();
    let summary = json!({
        "dir": a.dir,
        "shards": m.shards.len(),
        "records": ds.len(),
        "bytes": m.bytes,
        "payload_bytes": m.payload_bytes,
        "classes": m.classes.as_ref().map(|c| c.len()),
        "labels": labels,
        "content_types": types,
        "width": summary_of(&mut widths),
        "height": summary_of(&mut heights),
        "payload_size": summary_of(&mut sizes),
    });
    if a.json {
        writeln!(out, "{summary}")?;
    } else {
        writeln!(out, "dataset {}", a.dir.display())?;
        writeln!(out, "  shards         {}", m.shards.len())?;
        writeln!(out, "  records        {}", ds.len())?;
        writeln!(out, "  bytes          {} ({} payload)", m.bytes, m.payload_bytes)?;
        for key in ["width", "height", "payload_size"] {
            let s = &summary[key];
            writeln!(out, "  {key:<14} min {} / median {} / max {}", s["min"], s["median"], s["max"])?;
        }
        writeln!(out, "  content types  {}", serde_json::to_string(&summary["content_types"])?)?;
        writeln!(out, "  labels         {}", serde_json::to_string(&summary["labels"])?)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_of<T: Ord + Copy + serde::Serialize>(v: &mut [T]) -> serde_json::Value {
    if v.is_empty() {
        return json!(null);
    }
    v.sort_unstable();
    json!({"min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1]})
}

fn ls(a: &LsArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let ds = open(&a.dir)?;
    let n = if a.limit == 0 { ds.len() } else { a.limit.min(ds.len()) };
    for g in 0..n {
        let (s, _) = ds.locate(g).context("index within dataset")?;
        let r = ds.get(g)?;
        let shard = &ds.manifest().shards[s].file;
        if a.json {
            let v = json!({"index": g, "id": r.id, "key": r.key, "label": r.label, "width": r.width,
                           "height": r.height, "content_type": r.content_type.name(), "bytes": r.bytes.len(), "shard": shard});
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{g}\t{}\t{}\t{}\t{}x{}\t{}\t{shard}", r.id, r.key, label_text(r.label), r.width, r.height, r.bytes.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cat(a: &CatArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let ds = open(&a.dir)?;
    let record = if let Some(i) = a.index {
        ds.get(i)?
    } else {
        let found = (0..ds.len()).map(|g| ds.get(g)).find(|r| match r {
            Ok(r) => a.id.is_some_and(|id| r.id == id) || a.key.as_deref().is_some_and(|k| r.key == k),
            Err(_) => true,
        });
        match found {
            Some(r) => r?,
            None => bail!("no record with {} in {}", a.id.map_or_else(|| format!("key {:?}", a.key.as_deref().unwrap_or("")), |i| format!("id {i}")), a.dir.display()),
        }
    };
    match &a.output {
        Some(path) => std::fs::write(path, record.bytes).with_context(|| format!("writing {}", path.display()))?,
        None => out.write_all(record.bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn partition(a: &PartitionArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if a.world == 0 {
        bail!("--world must be at least 1");
    }
    if let Some(r) = a.rank.filter(|&r| r >= a.world) {
        bail!("--rank {r} is not below --world {}", a.world);
    }
    let m = Manifest::load(&a.dir)?;
    let counts = m.record_counts();
    let ranks: Vec<usize> = a.rank.map_or_else(|| (0..a.world).collect(), |r| vec![r]);
    for rank in ranks {
        let shards = silt_shards::partition(&counts, rank, a.world, a.mode);
        let records: u64 = shards.iter().map(|&s| counts[s]).sum();
        if a.json {
            let files: Vec<&str> = shards.iter().map(|&s| m.shards[s].file.as_str()).collect();
            writeln!(out, "{}", json!({"rank": rank, "world": a.world, "records": records, "shards": files}))?;
        } else {
            let range = match (shards.first(), shards.last()) {
                (Some(f), Some(l)) => format!("{} .. {}", m.shards[*f].file, m.shards[*l].file),
                _ => "(none)".into(),
            };
            writeln!(out, "rank {rank}/{}: {} shards, {records} records: {range}", a.world, shards.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn merge(a: &MergeArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let r = silt_shards::merge_datasets(&a.out, &a.parts)?;
    writeln!(out, "merged {} parts: {} shards, {} records into {}", r.parts, r.shards, r.records, a.out.display())?;
    Ok(ExitCode::SUCCESS)
}

fn repair(a: &RepairArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    if !a.dir.join(silt_shards::manifest::MANIFEST_FILE).exists() {
        bail!("{} has no manifest.json: not a dataset directory", a.dir.display());
    }
    let (_, rec) = DatasetWriter::open(&a.dir, DatasetWriterOptions::default())?;
    writeln!(out, "removed temporary files: {:?}", rec.removed_temp_files)?;
    writeln!(out, "adopted shards:          {:?}", rec.adopted_shards)?;
    writeln!(out, "rejected shards:         {:?}", rec.rejected_shards)?;
    Ok(ExitCode::SUCCESS)
}
