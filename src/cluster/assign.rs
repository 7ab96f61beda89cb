//! Clustering outputs on disk, as `.npy` arrays that trainers, the sampler and numpy map without
//! copying: `ids.npy` (u64 record ids, row order), `labels.npy` (i64 cluster per row, so
//! id → label is `labels[row of id]`), `centroids.npy` (f32 k × d); hierarchical runs add
//! `level{l}_labels.npy` / `level{l}_centroids.npy` for every level. Also reads label files for
//! evaluation: `.npy` of any integer type, or text with one integer per line.

use super::error::{ClusterError, Result};
use super::npy::{self, NpyFile};
use std::path::Path;

/// Writes ids, labels and centroids into `dir` (created if missing); each file atomically.
pub fn write_flat(dir: &Path, ids: &[u64], labels: &[i64], centroids: &[f32], d: usize) -> Result<()> {
    if ids.len() != labels.len() {
        return Err(ClusterError::Invalid(format!("{} ids but {} labels", ids.len(), labels.len())));
    }
    std::fs::create_dir_all(dir).map_err(|e| ClusterError::io(dir, e))?;
    npy::write(&dir.join("ids.npy"), &[ids.len()], ids)?;
    npy::write(&dir.join("labels.npy"), &[labels.len()], labels)?;
    npy::write(&dir.join("centroids.npy"), &[centroids.len() / d.max(1), d], centroids)
}

/// Writes one level of a hierarchical clustering.
pub fn write_level(dir: &Path, level: usize, labels: &[i64], centroids: &[f32], d: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ClusterError::io(dir, e))?;
    npy::write(&dir.join(format!("level{level}_labels.npy")), &[labels.len()], labels)?;
    npy::write(&dir.join(format!("level{level}_centroids.npy")), &[centroids.len() / d.max(1), d], centroids)
}

/// Reads a label file: `.npy` (integer dtype) or text, one integer per line (blank lines skipped).
pub fn read_labels(path: &Path) -> Result<Vec<i64>> {
    if path.extension().is_some_and(|e| e == "npy") {
        return NpyFile::open(path)?.to_i64();
    }
    let text = std::fs::read_to_string(path).map_err(|e| ClusterError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim().parse::<i64>().map_err(|_| ClusterError::corrupt(path, format!("line {}: `{}` is not an integer", i + 1, l.trim())))
        })
        .collect()
}
