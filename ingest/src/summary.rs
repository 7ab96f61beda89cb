//! The end-of-run summary (`--json` prints it as one JSON object).

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Records in the dataset now (this run and earlier, interrupted runs of the same command).
    pub records: u64,
    /// Items skipped with a reason (see `reasons` and quarantine.jsonl).
    pub quarantined: u64,
    /// Items whose bytes equal an earlier record's (see duplicates.jsonl).
    pub duplicates: u64,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    /// Quarantined items by reason.
    pub reasons: BTreeMap<String, u64>,
    /// Records written by this run (the rest were there already).
    pub records_this_run: u64,
    /// Items found finished by an earlier run and skipped.
    pub resumed_items: u64,
    /// Payload bytes written by this run.
    pub bytes_this_run: u64,
    pub shards: u64,
    pub out: String,
}

impl Summary {
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} records in {} shards at {} ({} new, {} already there); {} quarantined, {} duplicates; {:.1} s, {:.1} MB written",
            self.records,
            self.shards,
            self.out,
            self.records_this_run,
            self.records - self.records_this_run.min(self.records),
            self.quarantined,
            self.duplicates,
            self.seconds,
            self.bytes_this_run as f64 / 1e6
        );
        for (reason, n) in &self.reasons {
            s.push_str(&format!("\n  quarantined {reason}: {n}"));
        }
        s
    }
}
