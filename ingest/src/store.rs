//! Opening an object store from a URL: file://, s3:// (credentials and endpoint from the usual
//! AWS_* variables), http(s)://, memory://. object_store's own retries are turned off: the
//! fetch stage retries with its own policy, so failures are counted in one place.

use crate::error::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme, RetryConfig};
use std::sync::Arc;
use url::Url;

pub fn open_store(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let store_err = |source: object_store::Error| Error::Store { url: url.to_string(), source };
    // A plain local path is accepted too.
    let parsed = match Url::parse(url) {
        Ok(u) => u,
        Err(_) => {
            let abs = std::path::Path::new(url).canonicalize().map_err(|e| Error::io(url, e))?;
            Url::from_directory_path(&abs).map_err(|_| Error::Usage(format!("{url}: not a URL or directory")))?
        }
    };
    let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|e| store_err(e.into()))?;
    let no_retries = RetryConfig { max_retries: 0, ..RetryConfig::default() };
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
        ObjectStoreScheme::Memory => Arc::new(object_store::memory::InMemory::new()),
        ObjectStoreScheme::AmazonS3 => Arc::new(
            object_store::aws::AmazonS3Builder::from_env().with_url(url).with_retry(no_retries).build().map_err(store_err)?,
        ),
        ObjectStoreScheme::Http => {
            let origin = &parsed[..url::Position::BeforePath];
            let options = object_store::ClientOptions::new().with_allow_http(parsed.scheme() == "http");
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(origin)
                    .with_client_options(options)
                    .with_retry(no_retries)
                    .build()
                    .map_err(store_err)?,
            )
        }
        other => return Err(Error::Usage(format!("{url}: {other:?} stores are not built into this silt"))),
    };
    Ok((store, prefix))
}
