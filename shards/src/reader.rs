//! `ShardReader`: a memory-mapped, zero-copy, thread-shareable view of one shard file.

use crate::error::{Error, Result};
use crate::format::{self, corrupt, ContentType, Footer, FOOTER_LEN, HEADER_LEN, INDEX_ENTRY_LEN, NO_LABEL};
use crate::record::Record;
use memmap2::Mmap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// An opened shard. Opening checks the header, footer and index (O(records), no payload reads);
/// each record is checked structurally when read, and its CRC when read with `record_checked`.
///
/// The mapping assumes the file is not modified while open (shards are immutable once published).
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    map: Mmap,
    footer: Footer,
    minor_version: u16,
}

impl ShardReader {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < HEADER_LEN + FOOTER_LEN {
            // Too short to map usefully; report what is wrong with what is there.
            let mut head = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut head).map_err(|e| Error::io(path, e))?;
            format::check_header(path, &head)?;
            return Err(corrupt(path, format!("file of {len} bytes is shorter than header + footer")));
        }
        // SAFETY: shards are immutable once published (written under a temporary name, then
        // renamed); silt never writes to a published shard, so the mapping stays valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_map(path.to_path_buf(), map)
    }

    fn from_map(path: PathBuf, map: Mmap) -> Result<Self> {
        let len = map.len() as u64;
        let minor_version = format::check_header(&path, &map[..HEADER_LEN as usize])?;
        let footer = format::decode_footer(&path, &map[(len - FOOTER_LEN) as usize..], len)?;
        let index = &map[footer.index_offset as usize..(len - FOOTER_LEN) as usize];
        if crc32c::crc32c(index) != footer.index_crc {
            return Err(corrupt(&path, "index checksum mismatch"));
        }
        // Records must tile [HEADER_LEN, index_offset) in order, each slot 8-aligned.
        let mut expected = HEADER_LEN;
        for i in 0..footer.record_count {
            let (offset, slot) = entry(index, i);
            if offset != expected || slot < format::RECORD_HEADER_LEN || slot % format::ALIGN != 0 {
                return Err(corrupt(
                    &path,
                    format!("index entry {i} (offset {offset}, length {slot}) does not follow the previous record"),
                ));
            }
            expected = offset.checked_add(slot).filter(|&e| e <= footer.index_offset).ok_or_else(|| {
                corrupt(&path, format!("index entry {i} runs past the index at {}", footer.index_offset))
            })?;
        }
        if expected != footer.index_offset {
            return Err(corrupt(&path, "records do not end where the index starts"));
        }
        Ok(ShardReader { path, map, footer, minor_version })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn len(&self) -> u64 {
        self.footer.record_count
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sum of the payload lengths.
    pub fn payload_bytes(&self) -> u64 {
        self.footer.payload_bytes
    }
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }
    pub fn minor_version(&self) -> u16 {
        self.minor_version
    }
    /// The whole mapped file (for checksumming and benchmarks).
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    fn slot(&self, i: u64) -> Result<&[u8]> {
        if i >= self.footer.record_count {
            return Err(Error::OutOfRange { path: self.path.clone(), record: i, count: self.footer.record_count });
        }
        let index = &self.map[self.footer.index_offset as usize..];
        let (offset, slot) = entry(index, i);
        Ok(&self.map[offset as usize..(offset + slot) as usize])
    }

    /// Record `i`, checked structurally (bounds, tag, lengths, UTF-8 key); no CRC.
    pub fn record(&self, i: u64) -> Result<Record<'_>> {
        let slot = self.slot(i)?;
        let bad = |what: String| Error::CorruptRecord { path: self.path.clone(), record: i, what };
        let h = format::decode_record_header(slot, slot.len() as u64).map_err(bad)?;
        let start = format::RECORD_HEADER_LEN as usize;
        let payload_end = start + h.payload_len as usize;
        let bytes = &slot[start..payload_end];
        let key = std::str::from_utf8(&slot[payload_end..payload_end + h.key_len as usize])
            .map_err(|_| bad("key is not UTF-8".into()))?;
        Ok(Record {
            id: h.id,
            key,
            label: (h.label != NO_LABEL).then_some(h.label),
            width: h.width,
            height: h.height,
            content_type: ContentType::from_code(h.content_type),
            bytes,
        })
    }

    /// Record `i`, also checking its CRC32C (covers header, payload, key and padding).
    pub fn record_checked(&self, i: u64) -> Result<Record<'_>> {
        let slot = self.slot(i)?;
        let stored = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]);
        if crc32c::crc32c(&slot[4..]) != stored {
            return Err(Error::CorruptRecord { path: self.path.clone(), record: i, what: "CRC32C mismatch".into() });
        }
        self.record(i)
    }

    /// Records in file order (structural checks only).
    pub fn iter(&self) -> impl Iterator<Item = Result<Record<'_>>> + '_ {
        (0..self.len()).map(move |i| self.record(i))
    }
}

fn entry(index: &[u8], i: u64) -> (u64, u64) {
    let at = (i * INDEX_ENTRY_LEN) as usize;
    (format::u64_at(index, at), format::u64_at(index, at + 8))
}
