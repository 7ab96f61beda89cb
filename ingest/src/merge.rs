//! `silt ingest merge`: the finished output directories of the `--part i/n` runs of one command
//! become one dataset. silt-shards' `merge_datasets` moves the shards (hard links, checked for
//! overlapping ids); this adds what only ingest knows: that all n parts of the same command are
//! there and finished, and the joined quarantine and duplicate logs.

use crate::error::{Error, Result};
use crate::quarantine::{self, DuplicateEntry, QuarantineEntry, DUPLICATES_FILE, QUARANTINE_FILE};
use silt_shards::{DatasetWriter, Manifest};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Merges complete part directories into `out` (which must hold no shards yet).
pub fn merge_parts(parts: &[PathBuf], out: &Path) -> Result<Manifest> {
    let recipe = check_parts(parts)?;
    silt_shards::merge_datasets(out, parts)?;
    let (mut quarantined, mut duplicates) = (Vec::<QuarantineEntry>::new(), Vec::<DuplicateEntry>::new());
    for dir in parts {
        quarantined.extend(quarantine::load::<QuarantineEntry>(&dir.join(QUARANTINE_FILE))?);
        duplicates.extend(quarantine::load::<DuplicateEntry>(&dir.join(DUPLICATES_FILE))?);
    }
    quarantined.sort_by_key(|q| q.index);
    duplicates.sort_by_key(|d| d.index);
    quarantine::rewrite(&out.join(QUARANTINE_FILE), &quarantined)?;
    quarantine::rewrite(&out.join(DUPLICATES_FILE), &duplicates)?;
    // The merged dataset is what the command without --part makes.
    let (writer, _) = DatasetWriter::open(out, Default::default())?;
    writer.update_manifest(|m| {
        m.params.insert("ingest".into(), recipe);
        m.params.insert("ingest_complete".into(), true.into());
    })?;
    Ok(writer.manifest())
}

/// All parts finished, made by one command, each part number once, none missing. Returns the
/// command's recipe with the part set to the whole.
fn check_parts(parts: &[PathBuf]) -> Result<serde_json::Value> {
    let mut recipe: Option<serde_json::Value> = None;
    let mut seen = BTreeSet::new();
    let mut count = None;
    for dir in parts {
        let m = Manifest::load(dir)?;
        let usage = |what: &str| Error::Usage(format!("{}: {what}", dir.display()));
        if m.params.get("ingest_complete") != Some(&serde_json::Value::Bool(true)) {
            return Err(usage("the ingest of this part has not finished; re-run it first"));
        }
        let mut r = m.params.get("ingest").cloned().ok_or_else(|| usage("not made by silt ingest"))?;
        let part = r["part"].take();
        let (i, n) = (part["index"].as_u64().unwrap_or(0), part["count"].as_u64().unwrap_or(1));
        if *count.get_or_insert(n) != n || !seen.insert(i) {
            return Err(usage(&format!("part {i}/{n} does not fit the other parts")));
        }
        match &recipe {
            Some(prev) if *prev != r => return Err(usage("made by a different command than the other parts")),
            _ => recipe = Some(r),
        }
    }
    let n = count.unwrap_or(0);
    if seen.len() as u64 != n {
        return Err(Error::Usage(format!("got {} of the {n} parts", seen.len())));
    }
    let mut recipe = recipe.unwrap_or_default();
    recipe["part"] = serde_json::json!({ "index": 0, "count": 1 });
    Ok(recipe)
}
