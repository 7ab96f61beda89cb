//! Progress for long CLI work: an indicatif bar when stderr is a terminal, otherwise tracing log
//! lines every 5 % (so batch jobs' logs stay readable).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct BytesProgress {
    bar: Option<ProgressBar>,
    what: String,
    total: u64,
    done: u64,
    next_log: u64,
}

pub fn bytes_bar(total: u64, what: &str) -> BytesProgress {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    });
    BytesProgress { bar, what: what.into(), total, done: 0, next_log: total / 20 }
}

impl BytesProgress {
    pub fn advance(&mut self, item: &str, bytes: u64) {
        self.done += bytes;
        match &self.bar {
            Some(b) => b.inc(bytes),
            None if self.done >= self.next_log && self.total > 0 => {
                tracing::info!("{}: {:.0}% ({} of {} bytes, at {item})", self.what, 100.0 * self.done as f64 / self.total as f64, self.done, self.total);
                self.next_log = self.done + self.total / 20;
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
