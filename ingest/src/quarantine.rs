//! The two per-item logs next to the manifest: `quarantine.jsonl` (inputs that were skipped, with
//! the reason) and `duplicates.jsonl` (inputs whose bytes equal an earlier record's). Together
//! with the shards they say what happened to every listed item, which is what resume reads.
//!
//! Each entry is one `write` of one line on an unbuffered file, so a killed process leaves at
//! most one torn last line, which loading skips.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const QUARANTINE_FILE: &str = "quarantine.jsonl";
pub const DUPLICATES_FILE: &str = "duplicates.jsonl";

/// Why an item was skipped. The names are stable: they appear in `quarantine.jsonl` and in the
/// summary's per-reason counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Zip entry or listed path that is absolute or climbs out with `..`.
    UnsafePath,
    /// Symbolic link that points outside the source tree.
    SymlinkEscape,
    /// Listed but absent (missing file, zip entry or object).
    NotFound,
    /// Download failed after all retries (or timed out each time).
    FetchFailed,
    /// Local read failed (permissions, corrupt zip entry).
    ReadError,
    /// Larger than `--max-bytes`.
    TooLarge,
    /// Zero bytes.
    Empty,
    /// No known image signature (HTML error pages, text, unsupported formats).
    NotAnImage,
    /// The content is another image format than the name's extension says (a PNG named .jpg).
    FormatMismatch,
    /// Image signature, but the header cannot be parsed (truncated, corrupt).
    BadHeader,
    /// Width or height zero or beyond the format's limits.
    BadDimensions,
    /// More pixels than `--max-pixels` (decompression bombs).
    TooManyPixels,
    /// `--check full`: the decoder failed or warned.
    DecodeError,
    /// The decoder panicked on this input (caught; the run goes on).
    DecoderPanic,
    /// `--resize-shorter`/`--quality` could not re-encode the image.
    TransformError,
    /// A video in a YFCC100M list (marker 1).
    Video,
    /// A list line that cannot be parsed (wrong number of columns).
    BadListEntry,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnsafePath => "unsafe-path",
            Reason::SymlinkEscape => "symlink-escape",
            Reason::NotFound => "not-found",
            Reason::FetchFailed => "fetch-failed",
            Reason::ReadError => "read-error",
            Reason::TooLarge => "too-large",
            Reason::Empty => "empty",
            Reason::NotAnImage => "not-an-image",
            Reason::FormatMismatch => "format-mismatch",
            Reason::BadHeader => "bad-header",
            Reason::BadDimensions => "bad-dimensions",
            Reason::TooManyPixels => "too-many-pixels",
            Reason::DecodeError => "decode-error",
            Reason::DecoderPanic => "decoder-panic",
            Reason::TransformError => "transform-error",
            Reason::Video => "video",
            Reason::BadListEntry => "bad-list-entry",
        }
    }
}

/// A reason plus a human-readable detail (the decoder's message, the HTTP status ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub index: u64,
    pub key: String,
    pub reason: Reason,
    #[serde(default)]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateEntry {
    pub index: u64,
    pub key: String,
    /// Index (record id) of the earlier item with the same bytes (or, with `distance`, the
    /// perceptually closest earlier record).
    pub of: u64,
    /// `--dedup perceptual`: pHash bits that differ from record `of` (absent for equal bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<u32>,
}

/// Appends entries to one JSONL file.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
}

impl JsonlLog {
    pub fn open_append(path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(JsonlLog { path, file })
    }

    pub fn append<T: Serialize>(&mut self, entry: &T) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| Error::Task(format!("serialising a log entry: {e}")))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| Error::io(&self.path, e))
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every complete, parseable line; a torn last line from a killed run is skipped.
pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    Ok(text.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice(line).ok()).collect())
}

/// Replaces a log with exactly `entries` (temporary file, fsync, rename).
pub fn rewrite<T: Serialize>(path: &Path, entries: &[T]) -> Result<()> {
    // Hidden `.name.tmp`: `DatasetWriter::open` removes such leftovers after a crash.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut text = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut text, e).map_err(|e| Error::Task(format!("serialising a log entry: {e}")))?;
        text.push(b'\n');
    }
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| Error::io(path, e))
}
