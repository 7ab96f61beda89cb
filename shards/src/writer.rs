//! `ShardFileWriter`: writes one shard file under a temporary name and publishes it atomically.

use crate::error::{Error, Result};
use crate::format::{self, Footer, RecordHeader, FOOTER_LEN, HEADER_LEN, MAX_KEY_LEN, NO_LABEL, RECORD_HEADER_LEN};
use crate::manifest::ShardEntry;
use crate::record::Record;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const ZEROS: [u8; 8] = [0; 8];

/// Writes records into `.<name>.tmp` next to the final path; `finish` appends index and footer,
/// fsyncs, renames to the final name and fsyncs the directory. Until then no file with the final
/// name exists, so a killed writer never leaves something a reader would take for a shard.
pub struct ShardFileWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    out: Option<BufWriter<File>>,
    /// CRC32C of every byte written so far (the manifest's per-shard checksum).
    file_crc: u32,
    offset: u64,
    index: Vec<u8>,
    records: u64,
    payload_bytes: u64,
    first_id: Option<u64>,
    last_id: Option<u64>,
}

/// The temporary name a shard is written under before it is published.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

impl ShardFileWriter {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let tmp_path = temp_path_for(&path);
        let file = File::create(&tmp_path).map_err(|e| Error::io(&tmp_path, e))?;
        let mut w = ShardFileWriter {
            path,
            tmp_path,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            file_crc: 0,
            offset: 0,
            index: Vec::new(),
            records: 0,
            payload_bytes: 0,
            first_id: None,
            last_id: None,
        };
        w.write(&format::encode_header())?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn records(&self) -> u64 {
        self.records
    }
    /// Bytes the finished file will have if no more records are added.
    pub fn projected_bytes(&self) -> u64 {
        self.offset + self.index.len() as u64 + FOOTER_LEN
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("writer used after finish");
        out.write_all(bytes).map_err(|e| Error::io(&self.tmp_path, e))?;
        self.file_crc = crc32c::crc32c_append(self.file_crc, bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    pub fn append(&mut self, rec: &Record<'_>) -> Result<()> {
        let invalid = |what: &str| Error::InvalidRecord {
            path: self.path.clone(),
            key: rec.key.chars().take(200).collect(),
            what: what.into(),
        };
        if rec.key.len() > MAX_KEY_LEN {
            return Err(invalid("key longer than 64 KiB"));
        }
        if rec.label == Some(NO_LABEL) {
            return Err(invalid("label i64::MIN is reserved for 'no label'"));
        }
        let h = RecordHeader {
            crc: 0,
            id: rec.id,
            label: rec.label.unwrap_or(NO_LABEL),
            width: rec.width,
            height: rec.height,
            payload_len: rec.bytes.len() as u64,
            key_len: rec.key.len() as u32,
            content_type: rec.content_type.code(),
        };
        let slot = h.record_len().ok_or_else(|| invalid("record too large"))?;
        let pad = (slot - RECORD_HEADER_LEN - h.payload_len - h.key_len as u64) as usize;
        // The CRC covers everything after its own 4 bytes: header rest, payload, key, padding.
        let mut header = format::encode_record_header(&h);
        let mut crc = crc32c::crc32c(&header[4..]);
        crc = crc32c::crc32c_append(crc, rec.bytes);
        crc = crc32c::crc32c_append(crc, rec.key.as_bytes());
        crc = crc32c::crc32c_append(crc, &ZEROS[..pad]);
        header[0..4].copy_from_slice(&crc.to_le_bytes());

        self.index.extend_from_slice(&self.offset.to_le_bytes());
        self.index.extend_from_slice(&slot.to_le_bytes());
        self.write(&header)?;
        self.write(rec.bytes)?;
        self.write(rec.key.as_bytes())?;
        self.write(&ZEROS[..pad])?;
        self.records += 1;
        self.payload_bytes += h.payload_len;
        self.first_id.get_or_insert(rec.id);
        self.last_id = Some(rec.id);
        Ok(())
    }

    /// Writes index and footer, makes the file durable and publishes it under its final name.
    pub fn finish(mut self) -> Result<ShardEntry> {
        debug_assert_eq!(self.offset % format::ALIGN, 0);
        let footer = Footer {
            index_offset: self.offset,
            record_count: self.records,
            payload_bytes: self.payload_bytes,
            index_crc: crc32c::crc32c(&self.index),
        };
        let index = std::mem::take(&mut self.index);
        self.write(&index)?;
        self.write(&format::encode_footer(&footer))?;
        let file = self
            .out
            .take()
            .expect("finish called once")
            .into_inner()
            .map_err(|e| Error::io(&self.tmp_path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp_path, e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path).map_err(|e| Error::io(&self.path, e))?;
        sync_parent_dir(&self.path)?;
        debug_assert!(self.offset >= HEADER_LEN + FOOTER_LEN);
        Ok(ShardEntry {
            file: self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            records: self.records,
            bytes: self.offset,
            payload_bytes: self.payload_bytes,
            crc32c: self.file_crc,
            first_id: self.first_id,
            last_id: self.last_id,
        })
    }
}

impl Drop for ShardFileWriter {
    /// An abandoned writer removes its temporary file (best effort; a crash leaves it, and the
    /// next `DatasetWriter::open` removes it).
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// fsync the directory holding `path`, so a rename inside it survives a power cut.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}
