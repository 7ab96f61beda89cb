//! Line plots of a run's metrics, drawn to PNG: [`write_report`] reads `RUN_DIR/metrics.jsonl`
//! and writes into `RUN_DIR/report/`:
//!
//! | file | what |
//! |---|---|
//! | `loss.png` | training loss per step, with the mean of each epoch (or per epoch when only epoch records exist) |
//! | `lr.png` | learning rate per step (or per epoch) |
//! | `throughput.png` | images per second per step |
//! | `accuracy.png` | training accuracy on the method's own targets (pseudo-labels, rotations) per step |
//! | `nmi_labels.png` | NMI (and AMI, ARI, Hungarian accuracy when logged) between the training clustering and the true labels per epoch; NMI of the evaluation's k-means |
//! | `nmi_prev.png` | NMI between successive cluster assignments, per epoch (DeepCluster's stability curve) |
//! | `kmeans_loss.png` | k-means objective per clustering |
//! | `knn.png` | kNN top-1 (and top-5, linear-probe top-1 when logged) per epoch |
//! | `cluster_sizes.png` | sizes of the last logged clustering, largest first, log-scale y |
//!
//! A plot without data is skipped and listed in [`ReportSummary::skipped`] with the reason.

use super::metrics::Metrics;
use super::ReportError;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where [`write_report_with`] reads and writes, and how large the plots are.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The metrics file (default `RUN_DIR/metrics.jsonl`).
    pub metrics: PathBuf,
    /// Directory for the PNG files (default `RUN_DIR/report`), created if missing.
    pub out_dir: PathBuf,
    /// Size of every plot in pixels.
    pub width: u32,
    pub height: u32,
}

impl ReportOptions {
    /// The defaults for a run directory: `metrics.jsonl` in, `report/` out, 1000×600 plots.
    pub fn for_run(run_dir: &Path) -> Self {
        ReportOptions { metrics: run_dir.join("metrics.jsonl"), out_dir: run_dir.join("report"), width: 1000, height: 600 }
    }
}

/// A plot that was not drawn, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// What [`write_report`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    pub metrics: PathBuf,
    pub out_dir: PathBuf,
    /// Non-empty lines in the metrics file and lines that could not be used (a truncated last
    /// line after a crash shows up here with `last: true`).
    pub lines: usize,
    pub bad_lines: Vec<super::BadLine>,
    /// PNG files written, in drawing order.
    pub written: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
}

/// Writes the PNG plots of `run_dir/metrics.jsonl` into `run_dir/report/`.
pub fn write_report(run_dir: &Path) -> Result<ReportSummary, ReportError> {
    write_report_with(&ReportOptions::for_run(run_dir))
}

/// [`write_report`] with explicit paths and plot size.
pub fn write_report_with(opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    if opts.width < 200 || opts.height < 150 {
        return Err(ReportError::Invalid(format!("plot size {}×{} is too small (at least 200×150)", opts.width, opts.height)));
    }
    let m = Metrics::read(&opts.metrics)?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| ReportError::io(&opts.out_dir, e))?;
    let mut summary = ReportSummary {
        metrics: opts.metrics.clone(),
        out_dir: opts.out_dir.clone(),
        lines: m.lines,
        bad_lines: m.bad_lines.clone(),
        written: Vec::new(),
        skipped: Vec::new(),
    };
    for (file, plot) in plots(&m) {
        match plot {
            Ok(spec) => {
                let path = opts.out_dir.join(file);
                let img = render(&spec, opts.width, opts.height, &path)?;
                super::grid::save_png(&img, &path)?;
                summary.written.push(path);
            }
            Err(reason) => summary.skipped.push(Skipped { file: file.to_string(), reason }),
        }
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// What to draw

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Points,
    LinePoints,
    /// A thin, light line (e.g. per-step values under their epoch means).
    Faint,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub mark: Mark,
}

/// A plot: title, axis names, series; `log_y` draws the y axis logarithmically (points with
/// y ≤ 0 are left out).
#[derive(Debug, Clone)]
pub struct PlotSpec {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// The x axis counts something whole (epochs): only integer ticks are labelled.
    pub integer_x: bool,
    pub legend: SeriesLabelPosition,
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(120, 120, 120);

fn series(label: &str, points: Vec<(f64, f64)>, color: RGBColor, mark: Mark) -> Series {
    Series { label: label.to_string(), points, color, mark }
}

fn spec(title: String, x: &str, y: &str, series: Vec<Series>) -> PlotSpec {
    PlotSpec { title, x_desc: x.into(), y_desc: y.into(), series, log_y: false, integer_x: x == "epoch", legend: SeriesLabelPosition::UpperRight }
}

/// Per-epoch points of the records that carry the value.
fn per_epoch<R>(records: &[R], epoch: impl Fn(&R) -> i64, value: impl Fn(&R) -> Option<f64>) -> Vec<(f64, f64)> {
    records.iter().filter_map(|r| value(r).map(|v| (epoch(r) as f64, v))).collect()
}

type Plot = Result<PlotSpec, String>;

/// Every plot of the report, in order, with the file name it goes to (or why it is skipped).
fn plots(m: &Metrics) -> Vec<(&'static str, Plot)> {
    vec![
        ("loss.png", loss_plot(m)),
        ("lr.png", lr_plot(m)),
        ("throughput.png", throughput_plot(m)),
        ("accuracy.png", accuracy_plot(m)),
        ("nmi_labels.png", nmi_labels_plot(m)),
        ("nmi_prev.png", nmi_prev_plot(m)),
        ("kmeans_loss.png", kmeans_loss_plot(m)),
        ("knn.png", knn_plot(m)),
        ("cluster_sizes.png", sizes_plot(m)),
    ]
}

fn loss_plot(m: &Metrics) -> Plot {
    let steps: Vec<(f64, f64)> = m.steps.iter().filter_map(|s| s.loss.map(|l| (s.x, l))).collect();
    if steps.is_empty() {
        let pts = per_epoch(&m.epochs, |e| e.epoch, |e| e.loss);
        if pts.is_empty() {
            return Err("no step or epoch record with a loss".into());
        }
        return Ok(spec("Training loss per epoch".into(), "epoch", "loss", vec![series("epoch loss", pts, BLUE, Mark::LinePoints)]));
    }
    // Epoch means at the last step of each epoch: the logged epoch loss when there is one,
    // else the mean of that epoch's logged step losses.
    let mut ends: std::collections::BTreeMap<i64, (f64, f64, usize)> = Default::default(); // epoch -> (x end, sum, n)
    for s in &m.steps {
        if let (Some(e), Some(l)) = (s.epoch, s.loss) {
            let entry = ends.entry(e).or_insert((s.x, 0.0, 0));
            entry.0 = entry.0.max(s.x);
            entry.1 += l;
            entry.2 += 1;
        }
    }
    let means: Vec<(f64, f64)> = ends
        .iter()
        .map(|(e, &(x, sum, n))| {
            let logged = m.epochs.iter().find(|r| r.epoch == *e).and_then(|r| r.loss);
            (x, logged.unwrap_or(sum / n as f64))
        })
        .collect();
    let mut s = vec![series("loss per step", steps, BLUE, Mark::Faint)];
    if !means.is_empty() {
        s.push(series("epoch mean", means, ORANGE, Mark::LinePoints));
    }
    Ok(spec("Training loss".into(), "step", "loss", s))
}

fn lr_plot(m: &Metrics) -> Plot {
    let steps: Vec<(f64, f64)> = m.steps.iter().filter_map(|s| s.lr.map(|l| (s.x, l))).collect();
    if !steps.is_empty() {
        return Ok(spec("Learning rate".into(), "step", "learning rate", vec![series("lr", steps, BLUE, Mark::Line)]));
    }
    let pts = per_epoch(&m.epochs, |e| e.epoch, |e| e.lr);
    if pts.is_empty() {
        return Err("no step or epoch record with an lr".into());
    }
    Ok(spec("Learning rate per epoch".into(), "epoch", "learning rate", vec![series("lr", pts, BLUE, Mark::LinePoints)]))
}

fn throughput_plot(m: &Metrics) -> Plot {
    let pts: Vec<(f64, f64)> = m.steps.iter().filter_map(|s| s.images_per_s.map(|v| (s.x, v))).collect();
    if pts.is_empty() {
        return Err("no step record with images_per_s".into());
    }
    Ok(spec("Training throughput".into(), "step", "images / s", vec![series("images/s", pts, BLUE, Mark::Line)]))
}

fn accuracy_plot(m: &Metrics) -> Plot {
    let pts: Vec<(f64, f64)> = m.steps.iter().filter_map(|s| s.accuracy.map(|v| (s.x, v))).collect();
    if pts.is_empty() {
        return Err("no step record with accuracy".into());
    }
    Ok(spec("Training accuracy on the method's targets".into(), "step", "accuracy", vec![series("accuracy", pts, BLUE, Mark::Line)]))
}

fn nmi_labels_plot(m: &Metrics) -> Plot {
    let mut s = Vec::new();
    for (label, color, f) in [
        ("NMI", BLUE, (|c: &super::ClusterRecord| c.nmi_labels) as fn(&super::ClusterRecord) -> Option<f64>),
        ("AMI", ORANGE, |c| c.ami_labels),
        ("ARI", GREEN, |c| c.ari_labels),
        ("accuracy (Hungarian)", RED, |c| c.accuracy_labels),
    ] {
        let pts = per_epoch(&m.clusters, |c| c.epoch, f);
        if !pts.is_empty() {
            s.push(series(label, pts, color, Mark::LinePoints));
        }
    }
    let eval_nmi = per_epoch(&m.evals, |e| e.epoch, |e| e.nmi_kmeans);
    if !eval_nmi.is_empty() {
        s.push(series("NMI, k-means of eval features", eval_nmi, PURPLE, Mark::LinePoints));
    }
    if s.is_empty() {
        return Err("no cluster record with nmi_labels and no eval record with nmi_kmeans".into());
    }
    let mut p = spec("Clusters vs true labels".into(), "epoch", "score", s);
    p.legend = SeriesLabelPosition::UpperLeft;
    Ok(p)
}

fn nmi_prev_plot(m: &Metrics) -> Plot {
    let pts = per_epoch(&m.clusters, |c| c.epoch, |c| c.nmi_prev);
    if pts.is_empty() {
        return Err("no cluster record with nmi_prev".into());
    }
    Ok(spec("NMI between successive cluster assignments".into(), "epoch", "NMI(t, t-1)", vec![series("NMI(t, t-1)", pts, BLUE, Mark::LinePoints)]))
}

fn kmeans_loss_plot(m: &Metrics) -> Plot {
    let pts = per_epoch(&m.clusters, |c| c.epoch, |c| c.kmeans_loss);
    if pts.is_empty() {
        return Err("no cluster record with kmeans_loss".into());
    }
    Ok(spec("k-means objective".into(), "epoch", "k-means loss", vec![series("k-means loss", pts, BLUE, Mark::LinePoints)]))
}

fn knn_plot(m: &Metrics) -> Plot {
    let mut s = Vec::new();
    for (label, color, f) in [
        ("kNN top-1", BLUE, (|e: &super::EvalRecord| e.knn_top1) as fn(&super::EvalRecord) -> Option<f64>),
        ("kNN top-5", ORANGE, |e| e.knn_top5),
        ("linear top-1", GREEN, |e| e.linear_top1),
        ("linear top-5", RED, |e| e.linear_top5),
    ] {
        let pts = per_epoch(&m.evals, |e| e.epoch, f);
        if !pts.is_empty() {
            s.push(series(label, pts, color, Mark::LinePoints));
        }
    }
    if s.iter().all(|x| x.label != "kNN top-1") {
        return Err("no eval record with knn_top1".into());
    }
    let best = s[0].points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut p = spec(format!("kNN accuracy (best top-1 {best:.4})"), "epoch", "accuracy", s);
    p.legend = SeriesLabelPosition::UpperLeft;
    Ok(p)
}

fn sizes_plot(m: &Metrics) -> Plot {
    let c = m.last_sizes().ok_or_else(|| "no cluster record with sizes".to_string())?;
    let mut sizes = c.sizes.clone().unwrap_or_default();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let k = sizes.len();
    let total: u64 = sizes.iter().sum();
    let empty = sizes.iter().filter(|&&s| s == 0).count();
    if total == 0 {
        return Err(format!("the sizes of epoch {} are all zero", c.epoch));
    }
    let pts: Vec<(f64, f64)> = sizes.iter().enumerate().filter(|(_, &s)| s > 0).map(|(i, &s)| ((i + 1) as f64, s as f64)).collect();
    let uniform = total as f64 / k as f64;
    let mark = if k <= 100 { Mark::LinePoints } else { Mark::Line };
    let mut p = spec(
        format!("Cluster sizes, epoch {} (k = {k}, {total} points, {empty} empty, largest {})", c.epoch, sizes[0]),
        "cluster rank (largest first)",
        "points (log scale)",
        vec![series("cluster size", pts, BLUE, mark), series("uniform N/k", vec![(1.0, uniform), (k as f64, uniform)], GREY, Mark::Line)],
    );
    p.log_y = true;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// Fonts tried, in order, after `$SILT_FONT`.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
];

/// Registers a TrueType font as plotters' "sans-serif" (once per process).
fn ensure_font() -> Result<(), ReportError> {
    static FONT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = FONT.get_or_init(|| {
        let mut tried = Vec::new();
        let env = std::env::var_os("SILT_FONT").map(PathBuf::from);
        for path in env.into_iter().chain(FONT_CANDIDATES.iter().map(PathBuf::from)) {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                        return Ok(path);
                    }
                    tried.push(format!("{} (not a usable font)", path.display()));
                }
                Err(e) => tried.push(format!("{} ({e})", path.display())),
            }
        }
        Err(tried.join(", "))
    });
    match r {
        Ok(_) => Ok(()),
        Err(tried) => Err(ReportError::FontMissing { tried: tried.clone() }),
    }
}

/// Tick label: up to 4 significant digits, scientific notation for very large or small values.
pub fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.1e}");
        return s.replace(".0e", "e");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The [lo, hi) range of values with a margin; a single value gets a unit-sized window.
fn padded(vals: impl Iterator<Item = f64>, margin: f64) -> Range<f64> {
    let (lo, hi) = vals.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let d = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
        return (lo - d)..(hi + d);
    }
    (lo - span * margin)..(hi + span * margin)
}

macro_rules! draw_series_and_legend {
    ($chart:expr, $spec:expr, $log:expr) => {{
        for s in &$spec.series {
            let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite() && (!$log || *y > 0.0)).collect();
            let color = s.color;
            let (line, dots) = match s.mark {
                Mark::Line => (Some(color.stroke_width(2)), false),
                Mark::Points => (None, true),
                Mark::LinePoints => (Some(color.stroke_width(2)), true),
                Mark::Faint => (Some(color.mix(0.45).stroke_width(1)), false),
            };
            let legend_style = line.unwrap_or(color.filled());
            if let Some(style) = line {
                $chart
                    .draw_series(LineSeries::new(pts.clone(), style))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], legend_style.stroke_width(3)));
            }
            if dots {
                let a = $chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
                if line.is_none() {
                    a.label(s.label.clone()).legend(move |(x, y)| Circle::new((x + 12, y), 4, color.filled()));
                }
            }
        }
        if $spec.series.len() > 1 {
            $chart
                .configure_series_labels()
                .position($spec.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.5))
                .label_font(("sans-serif", 16))
                .margin(12)
                .draw()?;
        }
    }};
}

/// Draws `spec` into a `width × height` RGB image.
pub fn render(spec: &PlotSpec, width: u32, height: u32, path: &Path) -> Result<image::RgbImage, ReportError> {
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root, spec).map_err(|message| ReportError::Plot { path: path.to_path_buf(), message })?;
    }
    image::RgbImage::from_raw(width, height, buf).ok_or_else(|| ReportError::Invalid("plot buffer size".into()))
}

fn draw(root: &DrawingArea<BitMapBackend<'_>, Shift>, spec: &PlotSpec) -> Result<(), String> {
    draw_inner(root, spec).map_err(|e| e.to_string())
}

type DrawResult = Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw_inner(root: &DrawingArea<BitMapBackend<'_>, Shift>, spec: &PlotSpec) -> DrawResult {
    root.fill(&WHITE)?;
    let all = || spec.series.iter().flat_map(|s| s.points.iter().copied());
    let xr = padded(all().map(|p| p.0), 0.02);
    let integer_x = spec.integer_x;
    let x_fmt = move |v: &f64| if integer_x && (v - v.round()).abs() > 1e-9 { String::new() } else { fmt_tick(*v) };
    // Whole-number axes: about one label per unit when there are few units.
    let x_labels = if integer_x { ((xr.end - xr.start).floor() as usize + 1).clamp(3, 12) } else { 10 };
    let y_fmt = |v: &f64| fmt_tick(*v);
    let mut builder = ChartBuilder::on(root);
    builder.caption(&spec.title, ("sans-serif", 24)).margin(16).margin_right(28).x_label_area_size(56).y_label_area_size(84);
    if spec.log_y {
        let pos = || all().map(|p| p.1).filter(|&y| y > 0.0 && y.is_finite());
        let lo = pos().fold(f64::INFINITY, f64::min);
        let hi = pos().fold(f64::NEG_INFINITY, f64::max);
        // Whole decades: plotters labels a log axis from the first power of ten in range.
        let (lo, hi) = if lo.is_finite() {
            (10f64.powf((lo / 1.2).log10().floor()), 10f64.powf((hi * 1.2).log10().ceil()))
        } else {
            (1.0, 10.0)
        };
        let mut chart = builder.build_cartesian_2d(xr, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(spec.x_desc.as_str())
            .y_desc(spec.y_desc.as_str())
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        draw_series_and_legend!(chart, spec, true);
    } else {
        let yr = padded(all().map(|p| p.1), 0.06);
        let mut chart = builder.build_cartesian_2d(xr, yr)?;
        chart
            .configure_mesh()
            .x_desc(spec.x_desc.as_str())
            .y_desc(spec.y_desc.as_str())
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(RGBColor(238, 238, 238))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()?;
        draw_series_and_legend!(chart, spec, false);
    }
    root.present()?;
    Ok(())
}
