//! Progress: a bar (items/s, MB/s, ETA, quarantined) on a terminal, a tracing line every few
//! seconds otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Counters {
    pub items: AtomicU64,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub quarantined: AtomicU64,
    pub duplicates: AtomicU64,
}

pub struct Progress {
    pub counters: Arc<Counters>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// `total`: items this run will look at, when known. `enabled`: false silences it (tests).
    pub fn start(total: Option<u64>, enabled: bool) -> Self {
        let counters = Arc::new(Counters::default());
        let started = Instant::now();
        let (bar, ticker) = if !enabled {
            (None, None)
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} items, {per_sec}, ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let (c, b) = (counters.clone(), bar.clone());
            let t = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    b.set_position(c.items.load(Ordering::Relaxed));
                    b.set_message(format!(
                        "{:.1} MB/s, {} quarantined, {} duplicates",
                        c.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs,
                        c.quarantined.load(Ordering::Relaxed),
                        c.duplicates.load(Ordering::Relaxed)
                    ));
                }
            });
            (Some(bar), Some(t))
        } else {
            let c = counters.clone();
            let t = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    let items = c.items.load(Ordering::Relaxed);
                    tracing::info!(
                        items,
                        total = total.unwrap_or(0),
                        records = c.records.load(Ordering::Relaxed),
                        quarantined = c.quarantined.load(Ordering::Relaxed),
                        duplicates = c.duplicates.load(Ordering::Relaxed),
                        items_per_s = format!("{:.0}", items as f64 / secs),
                        mb_per_s = format!("{:.1}", c.bytes.load(Ordering::Relaxed) as f64 / 1e6 / secs),
                        "ingest progress"
                    );
                }
            });
            (None, Some(t))
        };
        Progress { counters, bar, ticker }
    }

    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(b) = self.bar {
            b.set_position(self.counters.items.load(Ordering::Relaxed));
            b.finish_and_clear();
        }
    }
}
