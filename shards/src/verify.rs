//! Verification: every record's CRC, the index, the footer, and the manifest's claims about each
//! shard (size, record count, whole-file CRC32C). Reports every problem, not just the first.

use crate::dataset_writer::SHARD_EXTENSION;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ShardEntry};
use crate::reader::ShardReader;
use serde::Serialize;
use std::path::Path;

/// One thing wrong, named by shard file and (when it is about one record) record number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub shard: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record {
            Some(r) => write!(f, "{}: record {r}: {}", self.shard, self.message),
            None => write!(f, "{}: {}", self.shard, self.message),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub shards: u64,
    pub records: u64,
    pub bytes: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(shard: &str, err: &Error) -> Problem {
    // The error text starts with the path; keep only what follows it.
    let text = err.to_string();
    let prefix = format!("{}: ", err.path().display());
    let mut message = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
    if let Some(r) = err.record() {
        message = message.strip_prefix(&format!("record {r}: ")).unwrap_or(&message).to_string();
    }
    Problem { shard: shard.into(), record: err.record(), message }
}

/// Checks one shard completely. Returns the manifest entry it deserves and the problems found
/// (records that fail are listed one by one; the rest are still checked).
pub fn check_shard(path: &Path) -> (Option<ShardEntry>, Vec<Problem>) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let reader = match ShardReader::open(path) {
        Ok(r) => r,
        Err(e) => return (None, vec![problem(&name, &e)]),
    };
    let mut problems = Vec::new();
    let (mut first_id, mut last_id, mut payload) = (None, None, 0u64);
    for i in 0..reader.len() {
        match reader.record_checked(i) {
            Ok(r) => {
                first_id.get_or_insert(r.id);
                last_id = Some(r.id);
                payload += r.bytes.len() as u64;
            }
            Err(e) => problems.push(problem(&name, &e)),
        }
    }
    if problems.is_empty() && payload != reader.payload_bytes() {
        problems.push(Problem {
            shard: name.clone(),
            record: None,
            message: format!("footer counts {} payload bytes, records hold {payload}", reader.payload_bytes()),
        });
    }
    let entry = ShardEntry {
        file: name,
        records: reader.len(),
        bytes: reader.file_bytes(),
        payload_bytes: reader.payload_bytes(),
        crc32c: crc32c::crc32c(reader.as_bytes()),
        first_id,
        last_id,
    };
    (Some(entry), problems)
}

/// Checks one shard; the first problem becomes an error. Used to adopt orphaned shards.
pub fn verify_shard_file(path: &Path) -> Result<ShardEntry> {
    match check_shard(path) {
        (Some(entry), problems) if problems.is_empty() => Ok(entry),
        (_, problems) => Err(Error::Corrupt {
            path: path.into(),
            what: problems.first().map(|p| p.to_string()).unwrap_or_default(),
        }),
    }
}

/// Checks a dataset directory: the manifest, every shard it names against its entry, and shard
/// files the manifest does not name.
pub fn verify_dataset(dir: &Path) -> VerifyReport {
    verify_dataset_with_progress(dir, |_, _| {})
}

/// `verify_dataset`, calling `progress(shard_file, shard_bytes)` after each shard (for long runs).
pub fn verify_dataset_with_progress(dir: &Path, mut progress: impl FnMut(&str, u64)) -> VerifyReport {
    let mut report = VerifyReport::default();
    let manifest = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(problem("manifest.json", &e));
            return report;
        }
    };
    for want in &manifest.shards {
        let path = dir.join(&want.file);
        let (got, problems) = check_shard(&path);
        progress(&want.file, want.bytes);
        report.shards += 1;
        report.problems.extend(problems);
        let Some(got) = got else { continue };
        report.records += got.records;
        report.bytes += got.bytes;
        let mut differs = |what: &str, manifest: String, file: String| {
            report.problems.push(Problem {
                shard: want.file.clone(),
                record: None,
                message: format!("manifest says {what} {manifest}, file has {file}"),
            })
        };
        if got.records != want.records {
            differs("records", want.records.to_string(), got.records.to_string());
        }
        if got.bytes != want.bytes {
            differs("bytes", want.bytes.to_string(), got.bytes.to_string());
        }
        if got.crc32c != want.crc32c {
            differs("crc32c", format!("{:08x}", want.crc32c), format!("{:08x}", got.crc32c));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut extra: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(&format!(".{SHARD_EXTENSION}")) && !manifest.shards.iter().any(|s| &s.file == n))
            .collect();
        extra.sort();
        for n in extra {
            report.problems.push(Problem {
                shard: n,
                record: None,
                message: "shard file is not in the manifest (run an ingest or `silt shards repair`)".into(),
            });
        }
    }
    report
}
