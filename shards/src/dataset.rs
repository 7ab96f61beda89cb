//! `Dataset`: every shard of a manifest opened at once, addressed by one global record index.

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::partition::{partition, PartitionMode};
use crate::reader::ShardReader;
use crate::record::Record;
use std::path::{Path, PathBuf};

pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<ShardReader>,
    /// starts[s] = global index of shard s's first record; starts[len] = total.
    starts: Vec<u64>,
}

impl Dataset {
    /// Opens every shard the manifest names and checks each against its entry's record count
    /// and size (not the CRCs: that is `verify`).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::load(&dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let mut starts = vec![0u64];
        for entry in &manifest.shards {
            let reader = ShardReader::open(dir.join(&entry.file))?;
            if reader.len() != entry.records || reader.file_bytes() != entry.bytes {
                return Err(Error::Corrupt {
                    path: reader.path().into(),
                    what: format!(
                        "manifest says {} records / {} bytes, file has {} / {}",
                        entry.records,
                        entry.bytes,
                        reader.len(),
                        reader.file_bytes()
                    ),
                });
            }
            starts.push(starts.last().copied().unwrap_or(0) + reader.len());
            shards.push(reader);
        }
        Ok(Dataset { dir, manifest, shards, starts })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn shards(&self) -> &[ShardReader] {
        &self.shards
    }
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Global index of shard `s`'s first record.
    pub fn shard_start(&self, s: usize) -> u64 {
        self.starts[s]
    }

    /// Global index -> (shard number, record number inside the shard).
    pub fn locate(&self, global: u64) -> Option<(usize, u64)> {
        if global >= self.len() {
            return None;
        }
        let s = self.starts.partition_point(|&st| st <= global) - 1;
        Some((s, global - self.starts[s]))
    }

    pub fn get(&self, global: u64) -> Result<Record<'_>> {
        match self.locate(global) {
            Some((s, i)) => self.shards[s].record(i),
            None => Err(Error::OutOfRange { path: self.dir.clone(), record: global, count: self.len() }),
        }
    }

    /// The shards `rank` of `world` should read (see `partition`).
    pub fn partition(&self, rank: usize, world: usize, mode: PartitionMode) -> Vec<usize> {
        partition(&self.manifest.record_counts(), rank, world, mode)
    }

    /// Global record indices held by the given shards, in order.
    pub fn indices_of<'a>(&'a self, shards: &'a [usize]) -> impl Iterator<Item = u64> + 'a {
        shards.iter().flat_map(move |&s| self.starts[s]..self.starts[s + 1])
    }
}
