//! Reports of a training run: PNG plots drawn from the run's `metrics.jsonl` ([`metrics`] reads
//! it, [`plot`] draws it: loss, learning rate, throughput, NMI against labels and between
//! successive clusterings, k-means loss, kNN accuracy, cluster sizes) and image grids
//! ([`grid`]) of the images that excite a filter most or sit nearest a cluster's mean
//! ([`top_images`]), and filter visualisation by gradient ascent on the input ([`filters`]).
//!
//! Plots are drawn with `plotters` into an in-memory RGB buffer and saved as PNG with `image`.
//! Text needs a TrueType font read at run time: `$SILT_FONT` if set, else DejaVu Sans from the
//! Debian package `fonts-dejavu-core` (or a few other common sans-serif fonts); a missing font is
//! [`ReportError::FontMissing`], which names the package.

pub mod filters;
pub mod grid;
pub mod metrics;
pub mod plot;
pub mod top_images;

pub use grid::{image_grid, save_png};
pub use metrics::{BadLine, ClusterRecord, EpochRecord, EvalRecord, Metrics, StepRecord};
pub use plot::{write_report, write_report_with, ReportOptions, ReportSummary, Skipped};

use std::path::{Path, PathBuf};

/// Everything that can go wrong while writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },
    #[error("{path}: {source}")]
    Image { path: PathBuf, #[source] source: image::ImageError },
    #[error(
        "no TrueType font for plot text (tried {tried}); install the Debian package fonts-dejavu-core \
         (apt-get install fonts-dejavu-core, part of ops/setup) or set SILT_FONT=/path/to/font.ttf"
    )]
    FontMissing { tried: String },
    #[error("{path}: plotting failed: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ReportError::Io { path: path.to_path_buf(), source }
    }
}
