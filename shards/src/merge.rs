//! Merging datasets: the shards of several part datasets (e.g. from `silt ingest --part i/n` on n
//! machines) become one dataset. Shard files are hard-linked (copied across file systems) under
//! new names; their bytes never change, so their checksums carry over.

use crate::dataset_writer::DatasetWriter;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::reader::ShardReader;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct MergeReport {
    pub parts: usize,
    pub shards: usize,
    pub records: u64,
}

/// Adds every shard of `parts` (in order) to the dataset `out`, which must hold no shards yet.
/// Refuses parts whose class lists differ or whose record ids overlap (a record ingested twice).
pub fn merge_datasets(out: &Path, parts: &[PathBuf]) -> Result<MergeReport> {
    let manifests: Vec<Manifest> = parts.iter().map(Manifest::load).collect::<Result<_>>()?;
    let out_manifest = out.join(crate::manifest::MANIFEST_FILE);
    let bad = |what: String| Error::Manifest { path: out_manifest.clone(), what };
    let classes = manifests.iter().find_map(|m| m.classes.clone());
    for (m, p) in manifests.iter().zip(parts) {
        if m.classes.is_some() && m.classes != classes {
            return Err(bad(format!("{} has a different class list than the other parts", p.display())));
        }
    }
    check_ids_disjoint(parts, &manifests).map_err(bad)?;

    let (writer, _) = DatasetWriter::open(out, Default::default())?;
    if !writer.manifest().shards.is_empty() {
        return Err(bad("the output dataset already holds shards; merge into an empty directory".into()));
    }
    let mut report = MergeReport { parts: parts.len(), ..Default::default() };
    for (m, p) in manifests.iter().zip(parts) {
        for s in &m.shards {
            writer.add_existing_shard(&p.join(&s.file), s)?;
            report.shards += 1;
            report.records += s.records;
        }
    }
    writer.update_manifest(|m| {
        m.classes = classes;
        m.params = manifests.first().map(|f| f.params.clone()).unwrap_or_default();
        m.params.insert("merged_from".into(), parts.iter().map(|p| p.display().to_string()).collect());
    })?;
    Ok(report)
}

/// Reads every record header once (no payloads) and looks for an id used twice.
fn check_ids_disjoint(parts: &[PathBuf], manifests: &[Manifest]) -> std::result::Result<(), String> {
    let total: u64 = manifests.iter().map(|m| m.records).sum();
    let mut ids = Vec::with_capacity(total as usize);
    for (m, p) in manifests.iter().zip(parts) {
        for s in &m.shards {
            let r = ShardReader::open(p.join(&s.file)).map_err(|e| e.to_string())?;
            for rec in r.iter() {
                ids.push(rec.map_err(|e| e.to_string())?.id);
            }
        }
    }
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(format!("record id {} appears in more than one part (ingested twice?)", w[0])),
        None => Ok(()),
    }
}
