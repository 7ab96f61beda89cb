//! Exact-duplicate detection by content hash (BLAKE3: fast, and collision-resistant, so a
//! hostile input cannot make a different image vanish as a "duplicate"). Near-duplicates
//! (`--dedup perceptual`) are `phash.rs`.

use std::collections::HashMap;

pub type Hash = [u8; 32];

pub fn hash(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// Content hash -> id of the record that holds those bytes.
#[derive(Default)]
pub struct Dedup {
    seen: HashMap<Hash, u64>,
}

impl Dedup {
    /// Records `id` as the holder of `hash` unless an earlier record has it; returns that
    /// earlier record's id for a duplicate.
    pub fn check(&mut self, hash: Hash, id: u64) -> Option<u64> {
        match self.seen.entry(hash) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
                None
            }
        }
    }

    /// The record holding `hash`, if one does.
    pub fn find(&self, hash: &Hash) -> Option<u64> {
        self.seen.get(hash).copied()
    }

    /// Records `id` as the holder of `hash` (the first holder stays).
    pub fn insert(&mut self, hash: Hash, id: u64) {
        self.seen.entry(hash).or_insert(id);
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
