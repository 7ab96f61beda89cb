//! Publishing a finished dataset directory to an object store (s3://, gs://-style URLs through
//! object_store, file:// too): shards with multipart uploads, then the logs, then the manifest
//! last, so a reader of the store never sees a manifest naming a shard that is not there yet.
//! Re-running after a crash or an outage skips shards already present with the right size.

use crate::error::{Error, Result};
use crate::quarantine::{DUPLICATES_FILE, QUARANTINE_FILE};
use crate::store::open_store;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Serialize;
use silt_shards::manifest::{Manifest, MANIFEST_FILE};
use std::io::Read;
use std::path::Path;

/// Multipart part size: above S3's 5 MiB minimum, small enough to keep memory low.
const PART_BYTES: usize = 8 << 20;
/// Parts in flight per shard.
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, Default, Clone, Serialize)]
pub struct UploadSummary {
    pub url: String,
    pub shards_uploaded: u64,
    pub shards_already_there: u64,
    pub bytes_uploaded: u64,
}

pub async fn upload_dataset(dir: &Path, url: &str) -> Result<UploadSummary> {
    let manifest = Manifest::load(dir)?;
    let (store, prefix) = open_store(url)?;
    let store_err = |source: object_store::Error| Error::Store { url: url.to_string(), source };
    let mut summary = UploadSummary { url: url.to_string(), ..Default::default() };
    for shard in &manifest.shards {
        let key = prefix.clone().join(shard.file.as_str());
        if matches!(store.head(&key).await, Ok(meta) if meta.size == shard.bytes) {
            summary.shards_already_there += 1;
            continue;
        }
        let local = dir.join(&shard.file);
        let mut file = std::fs::File::open(&local).map_err(|e| Error::io(&local, e))?;
        let upload = store.put_multipart(&key).await.map_err(store_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(Error::io(&local, e));
                }
            };
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(store_err(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(store_err)?;
        summary.shards_uploaded += 1;
        summary.bytes_uploaded += shard.bytes;
    }
    for name in [QUARANTINE_FILE, DUPLICATES_FILE, MANIFEST_FILE] {
        let local = dir.join(name);
        if !local.exists() {
            continue;
        }
        let bytes = std::fs::read(&local).map_err(|e| Error::io(&local, e))?;
        store.put(&prefix.clone().join(name), PutPayload::from(bytes)).await.map_err(store_err)?;
    }
    Ok(summary)
}
