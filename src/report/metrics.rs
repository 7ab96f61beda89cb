//! Reading a run's `metrics.jsonl`: one JSON object per line with a `"kind"` field.
//!
//! ```text
//! {"kind":"step","epoch":0,"step":12,"loss":2.31,"lr":0.05,"images_per_s":812.0,"time_s":3.2}
//! {"kind":"epoch","epoch":0,"loss":2.1,"lr":0.05,"seconds":41.2,"images":10000}
//! {"kind":"cluster","epoch":0,"k":100,"kmeans_loss":123.4,"nmi_labels":0.41,"ami_labels":0.3,
//!  "ari_labels":0.2,"nmi_prev":0.8,"sizes":[...]}
//! {"kind":"eval","epoch":0,"knn_top1":0.71,"knn_top5":0.95,"linear_top1":0.8,"nmi_kmeans":0.5}
//! {"kind":"run", ...free-form run configuration...}
//! ```
//!
//! The reader is tolerant by design, because the file is written by a process that may crash:
//! any field may be missing or of an unexpected type (it is then `None`), unknown kinds and
//! fields are ignored, bare `NaN`/`Infinity` tokens (Python's `json.dumps`) are read as missing
//! values, and lines that are not JSON objects (a truncated last line after a crash, say) are
//! skipped and listed in [`Metrics::bad_lines`].
//!
//! Epochs are signed: the trainer logs the evaluation of the untrained network as epoch −1.
//!
//! Resumed runs append to the same file; when records go back in time the later ones win: a
//! step record whose (epoch, step) is not after the previous one discards the earlier records
//! from that point on, and per-epoch records keep the last one written for each epoch.

use super::ReportError;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `{"kind":"step"}`: one training iteration (or one logging interval).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepRecord {
    pub epoch: Option<i64>,
    pub step: Option<u64>,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub images_per_s: Option<f64>,
    pub time_s: Option<f64>,
    /// Training accuracy on the method's own targets (pseudo-labels, rotations, ...).
    pub accuracy: Option<f64>,
    /// Position on a global step axis, filled by the reader: `step` if steps count across
    /// epochs, `step` + the steps of earlier epochs if they restart every epoch, previous + 1
    /// when `step` is missing.
    pub x: f64,
}

/// `{"kind":"epoch"}`: end-of-epoch summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EpochRecord {
    pub epoch: i64,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub seconds: Option<f64>,
    pub images: Option<u64>,
}

/// `{"kind":"cluster"}`: one re-clustering of the features.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterRecord {
    pub epoch: i64,
    pub k: Option<u64>,
    pub kmeans_loss: Option<f64>,
    pub nmi_labels: Option<f64>,
    pub ami_labels: Option<f64>,
    pub ari_labels: Option<f64>,
    /// Best one-to-one cluster→class accuracy (Hungarian).
    pub accuracy_labels: Option<f64>,
    /// NMI between this assignment and the previous one (DeepCluster's stability measure).
    pub nmi_prev: Option<f64>,
    /// Points per cluster, when logged.
    pub sizes: Option<Vec<u64>>,
}

/// `{"kind":"eval"}`: evaluation of the current features.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EvalRecord {
    pub epoch: i64,
    pub knn_top1: Option<f64>,
    pub knn_top5: Option<f64>,
    pub linear_top1: Option<f64>,
    pub linear_top5: Option<f64>,
    /// NMI / AMI / ARI of a k-means (k = classes) of the evaluation features against the labels.
    pub nmi_kmeans: Option<f64>,
    pub ami_kmeans: Option<f64>,
    pub ari_kmeans: Option<f64>,
}

/// A line that could not be used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
    /// The last line of the file (typically cut short by a crash).
    pub last: bool,
}

/// Everything read from one metrics file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub steps: Vec<StepRecord>,
    /// Sorted by epoch, one per epoch.
    pub epochs: Vec<EpochRecord>,
    /// Sorted by epoch, one per epoch.
    pub clusters: Vec<ClusterRecord>,
    /// Sorted by epoch, one per epoch.
    pub evals: Vec<EvalRecord>,
    /// `{"kind":"run"}` objects, as written.
    pub runs: Vec<Value>,
    /// Non-empty lines read.
    pub lines: usize,
    /// Objects whose kind is missing or unknown (ignored).
    pub unknown: usize,
    pub bad_lines: Vec<BadLine>,
}

fn f64_field(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    let f = v.get(key)?;
    f.as_u64().or_else(|| f.as_f64().filter(|x| x.is_finite() && *x >= 0.0 && x.fract() == 0.0).map(|x| x as u64))
}

fn i64_field(v: &Value, key: &str) -> Option<i64> {
    let f = v.get(key)?;
    f.as_i64().or_else(|| f.as_f64().filter(|x| x.is_finite() && x.fract() == 0.0 && x.abs() < 9e15).map(|x| x as i64))
}

/// Replaces the bare tokens `NaN`, `Infinity` and `-Infinity` outside strings with `null`.
fn sanitize_non_finite(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = line;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if ch == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// Records without an epoch follow the previous record of their kind.
fn next_epoch<V>(map: &BTreeMap<i64, V>) -> i64 {
    map.keys().next_back().map_or(0, |e| e + 1)
}

fn parse_object(line: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => Ok(v),
        Err(e) => serde_json::from_str::<Value>(&sanitize_non_finite(line)).map_err(|_| e.to_string()),
    }
}

impl Metrics {
    /// Reads and parses a metrics file (bytes that are not UTF-8 are replaced, so a line cut in
    /// the middle of a character is just another bad line).
    pub fn read(path: &Path) -> Result<Metrics, ReportError> {
        let bytes = std::fs::read(path).map_err(|e| ReportError::io(path, e))?;
        Ok(Metrics::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Parses the text of a metrics file (see the module docs for the tolerance rules).
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        let mut epochs = BTreeMap::new();
        let mut clusters = BTreeMap::new();
        let mut evals = BTreeMap::new();
        let all: Vec<&str> = text.lines().collect();
        let last_nonempty = all.iter().rposition(|l| !l.trim().is_empty());
        for (i, raw) in all.iter().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            m.lines += 1;
            let bad = |reason: String| BadLine { line: i + 1, reason, last: Some(i) == last_nonempty };
            let v = match parse_object(line) {
                Ok(v) if v.is_object() => v,
                Ok(_) => {
                    m.bad_lines.push(bad("not a JSON object".into()));
                    continue;
                }
                Err(e) => {
                    m.bad_lines.push(bad(e));
                    continue;
                }
            };
            match v.get("kind").and_then(Value::as_str) {
                Some("step") => m.push_step(StepRecord {
                    epoch: i64_field(&v, "epoch"),
                    step: u64_field(&v, "step"),
                    loss: f64_field(&v, "loss"),
                    lr: f64_field(&v, "lr"),
                    images_per_s: f64_field(&v, "images_per_s"),
                    time_s: f64_field(&v, "time_s"),
                    accuracy: f64_field(&v, "accuracy"),
                    x: 0.0,
                }),
                Some("epoch") => {
                    let epoch = i64_field(&v, "epoch").unwrap_or_else(|| next_epoch(&epochs));
                    epochs.insert(
                        epoch,
                        EpochRecord {
                            epoch,
                            loss: f64_field(&v, "loss"),
                            lr: f64_field(&v, "lr"),
                            seconds: f64_field(&v, "seconds"),
                            images: u64_field(&v, "images"),
                        },
                    );
                }
                Some("cluster") => {
                    let epoch = i64_field(&v, "epoch").unwrap_or_else(|| next_epoch(&clusters));
                    let sizes = v.get("sizes").and_then(Value::as_array).map(|a| {
                        a.iter().filter_map(|s| s.as_u64().or_else(|| s.as_f64().filter(|x| *x >= 0.0).map(|x| x as u64))).collect()
                    });
                    clusters.insert(
                        epoch,
                        ClusterRecord {
                            epoch,
                            k: u64_field(&v, "k"),
                            kmeans_loss: f64_field(&v, "kmeans_loss"),
                            nmi_labels: f64_field(&v, "nmi_labels"),
                            ami_labels: f64_field(&v, "ami_labels"),
                            ari_labels: f64_field(&v, "ari_labels"),
                            accuracy_labels: f64_field(&v, "accuracy_labels"),
                            nmi_prev: f64_field(&v, "nmi_prev"),
                            sizes,
                        },
                    );
                }
                Some("eval") => {
                    let epoch = i64_field(&v, "epoch").unwrap_or_else(|| next_epoch(&evals));
                    evals.insert(
                        epoch,
                        EvalRecord {
                            epoch,
                            knn_top1: f64_field(&v, "knn_top1"),
                            knn_top5: f64_field(&v, "knn_top5"),
                            linear_top1: f64_field(&v, "linear_top1"),
                            linear_top5: f64_field(&v, "linear_top5"),
                            nmi_kmeans: f64_field(&v, "nmi_kmeans"),
                            ami_kmeans: f64_field(&v, "ami_kmeans"),
                            ari_kmeans: f64_field(&v, "ari_kmeans"),
                        },
                    );
                }
                Some("run") => m.runs.push(v),
                _ => m.unknown += 1,
            }
        }
        m.epochs = epochs.into_values().collect();
        m.clusters = clusters.into_values().collect();
        m.evals = evals.into_values().collect();
        m.place_steps();
        m
    }

    /// Appends a step record; a record that is not after the previous one (a resumed run
    /// re-logging steps) first drops the records from its position on.
    fn push_step(&mut self, r: StepRecord) {
        if let (Some(e), Some(s)) = (r.epoch, r.step) {
            while let Some(last) = self.steps.last() {
                match (last.epoch, last.step) {
                    (Some(le), Some(ls)) if (le, ls) >= (e, s) => {
                        self.steps.pop();
                    }
                    _ => break,
                }
            }
        }
        self.steps.push(r);
    }

    /// Fills `StepRecord::x`: a global step axis whether `step` counts across epochs or
    /// restarts every epoch.
    fn place_steps(&mut self) {
        let mut offset = 0.0;
        let mut prev: Option<(Option<i64>, f64)> = None; // (epoch, x without offset)
        let mut last_x = -1.0;
        for r in &mut self.steps {
            let x = match r.step {
                Some(s) => {
                    let s = s as f64;
                    if let Some((pe, ps)) = prev {
                        if r.epoch.is_some() && r.epoch != pe && s <= ps {
                            offset = last_x + 1.0 - s;
                        }
                    }
                    prev = Some((r.epoch, s));
                    s + offset
                }
                None => last_x + 1.0,
            };
            r.x = x;
            last_x = x;
        }
    }

    /// The last cluster record that carries cluster sizes.
    pub fn last_sizes(&self) -> Option<&ClusterRecord> {
        self.clusters.iter().rev().find(|c| c.sizes.as_ref().is_some_and(|s| !s.is_empty()))
    }
}
