//! The on-disk layout of one shard file (see FORMAT.md). All integers are little-endian;
//! records, the index and the footer start at multiples of 8 bytes.

use crate::error::{Error, Result};
use std::path::Path;

pub const FILE_MAGIC: [u8; 8] = *b"SILTSHRD";
pub const FOOTER_MAGIC: [u8; 8] = *b"SILTFOOT";
pub const RECORD_TAG: [u8; 4] = *b"REC1";
pub const VERSION_MAJOR: u16 = 1;
pub const VERSION_MINOR: u16 = 0;

pub const HEADER_LEN: u64 = 32;
pub const RECORD_HEADER_LEN: u64 = 48;
pub const INDEX_ENTRY_LEN: u64 = 16;
pub const FOOTER_LEN: u64 = 48;
pub const ALIGN: u64 = 8;

/// Stored in the label field when a record has no label.
pub const NO_LABEL: i64 = i64::MIN;
/// Keys are paths or URLs; longer ones are almost surely hostile input.
pub const MAX_KEY_LEN: usize = 64 * 1024;

pub fn align_up(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

/// What the payload bytes are. Unknown codes from newer writers read as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    Unknown,
    Jpeg,
    Png,
    Webp,
    Gif,
    Bmp,
    Tiff,
    /// Raw 8-bit pixels, row-major, `width * height * channels` bytes (MNIST-style data).
    RawU8,
    Other(u8),
}

impl ContentType {
    pub fn code(self) -> u8 {
        match self {
            ContentType::Unknown => 0,
            ContentType::Jpeg => 1,
            ContentType::Png => 2,
            ContentType::Webp => 3,
            ContentType::Gif => 4,
            ContentType::Bmp => 5,
            ContentType::Tiff => 6,
            ContentType::RawU8 => 7,
            ContentType::Other(c) => c,
        }
    }

    pub fn from_code(code: u8) -> Self {
        match code {
            0 => ContentType::Unknown,
            1 => ContentType::Jpeg,
            2 => ContentType::Png,
            3 => ContentType::Webp,
            4 => ContentType::Gif,
            5 => ContentType::Bmp,
            6 => ContentType::Tiff,
            7 => ContentType::RawU8,
            c => ContentType::Other(c),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ContentType::Unknown => "unknown",
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
            ContentType::Webp => "image/webp",
            ContentType::Gif => "image/gif",
            ContentType::Bmp => "image/bmp",
            ContentType::Tiff => "image/tiff",
            ContentType::RawU8 => "raw/u8",
            ContentType::Other(_) => "other",
        }
    }

    /// Recognise the common image formats by their first bytes.
    pub fn sniff(bytes: &[u8]) -> Self {
        match bytes {
            [0xFF, 0xD8, 0xFF, ..] => ContentType::Jpeg,
            [0x89, b'P', b'N', b'G', ..] => ContentType::Png,
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => ContentType::Webp,
            [b'G', b'I', b'F', b'8', ..] => ContentType::Gif,
            [b'B', b'M', ..] => ContentType::Bmp,
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => ContentType::Tiff,
            _ => ContentType::Unknown,
        }
    }
}

/// File header: magic, version, header length, reserved, CRC32C of the first 28 bytes.
pub fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&FILE_MAGIC);
    h[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    h[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks magic, version and checksum of a file header; returns the minor version.
pub fn check_header(path: &Path, h: &[u8]) -> Result<u16> {
    let n = h.len().min(FILE_MAGIC.len());
    if h[..n] != FILE_MAGIC[..n] {
        return Err(Error::BadMagic { path: path.into() });
    }
    if h.len() < HEADER_LEN as usize {
        return Err(corrupt(path, format!("file of {} bytes is truncated inside the header", h.len())));
    }
    let (major, minor) = (u16_at(h, 8), u16_at(h, 10));
    if major != VERSION_MAJOR {
        return Err(Error::UnsupportedVersion { path: path.into(), major, minor });
    }
    if u32_at(h, 28) != crc32c::crc32c(&h[0..28]) {
        return Err(corrupt(path, "file header checksum mismatch"));
    }
    if u32_at(h, 12) as u64 != HEADER_LEN {
        return Err(corrupt(path, format!("header length {} (expected {HEADER_LEN})", u32_at(h, 12))));
    }
    Ok(minor)
}

/// What the footer says about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub index_offset: u64,
    pub record_count: u64,
    pub payload_bytes: u64,
    pub index_crc: u32,
}

pub fn encode_footer(f: &Footer) -> [u8; FOOTER_LEN as usize] {
    let mut b = [0u8; FOOTER_LEN as usize];
    b[0..8].copy_from_slice(&f.index_offset.to_le_bytes());
    b[8..16].copy_from_slice(&f.record_count.to_le_bytes());
    b[16..24].copy_from_slice(&f.payload_bytes.to_le_bytes());
    b[24..28].copy_from_slice(&f.index_crc.to_le_bytes());
    b[28..30].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    b[30..32].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..36]);
    b[36..40].copy_from_slice(&crc.to_le_bytes());
    b[40..48].copy_from_slice(&FOOTER_MAGIC);
    b
}

/// Parses the last FOOTER_LEN bytes of a file whose total length is `file_len`, and checks that
/// the index it points to fills exactly the space between the records and the footer.
pub fn decode_footer(path: &Path, b: &[u8], file_len: u64) -> Result<Footer> {
    if b.len() != FOOTER_LEN as usize || b[40..48] != FOOTER_MAGIC {
        return Err(corrupt(path, "no footer (incomplete or truncated file)"));
    }
    if u32_at(b, 36) != crc32c::crc32c(&b[0..36]) {
        return Err(corrupt(path, "footer checksum mismatch"));
    }
    let (major, minor) = (u16_at(b, 28), u16_at(b, 30));
    if major != VERSION_MAJOR {
        return Err(Error::UnsupportedVersion { path: path.into(), major, minor });
    }
    let f = Footer {
        index_offset: u64_at(b, 0),
        record_count: u64_at(b, 8),
        payload_bytes: u64_at(b, 16),
        index_crc: u32_at(b, 24),
    };
    let index_end = f
        .record_count
        .checked_mul(INDEX_ENTRY_LEN)
        .and_then(|n| n.checked_add(f.index_offset))
        .and_then(|n| n.checked_add(FOOTER_LEN));
    if f.index_offset < HEADER_LEN || !f.index_offset.is_multiple_of(ALIGN) || index_end != Some(file_len) {
        return Err(corrupt(
            path,
            format!(
                "footer places an index of {} entries at offset {} in a file of {file_len} bytes",
                f.record_count, f.index_offset
            ),
        ));
    }
    Ok(f)
}

/// The fixed-size part in front of each record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub crc: u32,
    pub id: u64,
    pub label: i64,
    pub width: u32,
    pub height: u32,
    pub payload_len: u64,
    pub key_len: u32,
    pub content_type: u8,
}

impl RecordHeader {
    /// Bytes the record occupies on disk: header, payload, key, zero padding to 8.
    pub fn record_len(&self) -> Option<u64> {
        RECORD_HEADER_LEN
            .checked_add(self.payload_len)?
            .checked_add(self.key_len as u64)?
            .checked_add(ALIGN - 1)
            .map(|n| n / ALIGN * ALIGN)
    }
}

/// Encodes a record header; the CRC field is filled by the caller after hashing the rest.
pub fn encode_record_header(h: &RecordHeader) -> [u8; RECORD_HEADER_LEN as usize] {
    let mut b = [0u8; RECORD_HEADER_LEN as usize];
    b[0..4].copy_from_slice(&h.crc.to_le_bytes());
    b[4..8].copy_from_slice(&RECORD_TAG);
    b[8..16].copy_from_slice(&h.id.to_le_bytes());
    b[16..24].copy_from_slice(&h.label.to_le_bytes());
    b[24..28].copy_from_slice(&h.width.to_le_bytes());
    b[28..32].copy_from_slice(&h.height.to_le_bytes());
    b[32..40].copy_from_slice(&h.payload_len.to_le_bytes());
    b[40..44].copy_from_slice(&h.key_len.to_le_bytes());
    b[44] = h.content_type;
    b
}

/// Decodes a record header from its slot of `slot_len` bytes (from the index). Returns a reason
/// string when the header cannot describe a record of that slot.
pub fn decode_record_header(b: &[u8], slot_len: u64) -> Result<RecordHeader, String> {
    if b.len() < RECORD_HEADER_LEN as usize {
        return Err(format!("slot of {slot_len} bytes is shorter than a record header"));
    }
    if b[4..8] != RECORD_TAG {
        return Err("bad record tag".into());
    }
    if b[45..48] != [0, 0, 0] {
        return Err("reserved header bytes are not zero".into());
    }
    let h = RecordHeader {
        crc: u32_at(b, 0),
        id: u64_at(b, 8),
        label: u64_at(b, 16) as i64,
        width: u32_at(b, 24),
        height: u32_at(b, 28),
        payload_len: u64_at(b, 32),
        key_len: u32_at(b, 40),
        content_type: b[44],
    };
    if h.key_len as usize > MAX_KEY_LEN {
        return Err(format!("key length {} exceeds {MAX_KEY_LEN}", h.key_len));
    }
    match h.record_len() {
        Some(n) if n == slot_len => Ok(h),
        _ => Err(format!(
            "payload of {} bytes and key of {} bytes do not fit the {slot_len}-byte slot",
            h.payload_len, h.key_len
        )),
    }
}

pub(crate) fn corrupt(path: &Path, what: impl Into<String>) -> Error {
    Error::Corrupt { path: path.into(), what: what.into() }
}
