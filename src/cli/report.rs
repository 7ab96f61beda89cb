//! `silt report RUN_DIR`: PNG plots of a run's `metrics.jsonl` (loss, learning rate, throughput,
//! NMI against labels and between successive clusterings, k-means loss, kNN accuracy, cluster
//! sizes) written into `RUN_DIR/report/`.

use anyhow::Context;
use clap::Args;
use crate::report::{write_report_with, ReportOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directory holding metrics.jsonl (written by the trainer).
    pub run_dir: PathBuf,
    /// Metrics file to read instead of RUN_DIR/metrics.jsonl.
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Directory for the PNG files instead of RUN_DIR/report.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Plot width in pixels.
    #[arg(long, default_value_t = 1000)]
    pub width: u32,
    /// Plot height in pixels.
    #[arg(long, default_value_t = 600)]
    pub height: u32,
    /// Print one JSON object (files written, plots skipped, unreadable lines) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ReportArgs {
    pub fn run(&self, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
        let mut opts = ReportOptions::for_run(&self.run_dir);
        if let Some(m) = &self.metrics {
            opts.metrics = m.clone();
        }
        if let Some(o) = &self.out {
            opts.out_dir = o.clone();
        }
        opts.width = self.width;
        opts.height = self.height;
        let summary = write_report_with(&opts).with_context(|| format!("report for {}", self.run_dir.display()))?;
        if self.json {
            writeln!(out, "{}", serde_json::to_string(&summary)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(out, "{}: {} lines", summary.metrics.display(), summary.lines)?;
        for b in &summary.bad_lines {
            let what = if b.last { " (last line, likely cut short by a crash)" } else { "" };
            writeln!(out, "  skipped line {}{what}: {}", b.line, b.reason)?;
        }
        for p in &summary.written {
            writeln!(out, "wrote {}", p.display())?;
        }
        for s in &summary.skipped {
            writeln!(out, "no {}: {}", s.file, s.reason)?;
        }
        writeln!(out, "{} plots written to {}, {} skipped", summary.written.len(), summary.out_dir.display(), summary.skipped.len())?;
        Ok(ExitCode::SUCCESS)
    }
}
