//! `Record`: the one view of an image record that the rest of silt sees, for writing and reading.

use crate::format::ContentType;

/// One image record. Read from a shard it borrows the memory mapping (zero copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Dataset-wide record id, chosen by the producer (ingest numbers them).
    pub id: u64,
    /// Where the record came from: a relative path, zip entry or object key.
    pub key: &'a str,
    /// Class label, if the source has one.
    pub label: Option<i64>,
    /// Pixel size from the image header (0 when unknown).
    pub width: u32,
    pub height: u32,
    pub content_type: ContentType,
    /// The encoded image (or raw pixels for `ContentType::RawU8`).
    pub bytes: &'a [u8],
}

/// An owned record, for producers that build records before handing them to a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    pub id: u64,
    pub key: String,
    pub label: Option<i64>,
    pub width: u32,
    pub height: u32,
    pub content_type: ContentType,
    pub bytes: Vec<u8>,
}

impl OwnedRecord {
    pub fn as_record(&self) -> Record<'_> {
        Record {
            id: self.id,
            key: &self.key,
            label: self.label,
            width: self.width,
            height: self.height,
            content_type: self.content_type,
            bytes: &self.bytes,
        }
    }
}

impl Record<'_> {
    pub fn to_owned_record(&self) -> OwnedRecord {
        OwnedRecord {
            id: self.id,
            key: self.key.to_owned(),
            label: self.label,
            width: self.width,
            height: self.height,
            content_type: self.content_type,
            bytes: self.bytes.to_vec(),
        }
    }
}
