//! The run's metrics log: one JSON object per line in `metrics.jsonl`, flushed line by line so a
//! crash loses at most the line being written (the reader tolerates a torn last line).

use serde_json::{json, Value};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    /// None on the ranks other than 0 of a data-parallel run: they log nothing.
    out: Option<BufWriter<File>>,
}

impl MetricsLog {
    /// Opens `dir/metrics.jsonl` for appending. A resumed run passes the length the file had at
    /// its checkpoint: what was logged after it (steps that will be run again) is cut off, so the
    /// log holds every step once.
    pub fn open(dir: &Path, resume_at: Option<u64>) -> std::io::Result<Self> {
        let path = dir.join("metrics.jsonl");
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Some(len) = resume_at {
            if file.metadata()?.len() > len {
                file.set_len(len)?;
            }
        }
        Ok(MetricsLog { path, out: Some(BufWriter::new(file)) })
    }

    /// A log that writes nothing (ranks other than 0).
    pub fn discard(dir: &Path) -> Self {
        MetricsLog { path: dir.join("metrics.jsonl"), out: None }
    }

    /// Bytes written so far (recorded in checkpoints).
    pub fn offset(&mut self) -> std::io::Result<u64> {
        match &mut self.out {
            Some(out) => {
                out.flush()?;
                Ok(out.get_ref().metadata()?.len())
            }
            None => Ok(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `fields` with `"kind": kind` first.
    pub fn write(&mut self, kind: &str, fields: Value) -> std::io::Result<()> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let mut line = json!({ "kind": kind });
        if let (Some(obj), Value::Object(f)) = (line.as_object_mut(), fields) {
            obj.extend(f);
        }
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        out.flush()
    }
}
