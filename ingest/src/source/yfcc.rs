//! `yfcc --list LIST --source URL`: YFCC100M images in an object store.
//!
//! LIST is one of
//! - the YFCC100M metadata file: 25 tab-separated columns (line number, photo id, photo hash,
//!   ..., download URL (17th), ..., marker (25th): 0 photo, 1 video). Videos are quarantined as
//!   `video` without a fetch.
//! - a short TSV: `id<TAB>hash` (yfcc100m_hash.tsv) or `line<TAB>id<TAB>hash` (the CLIP subset).
//! - a `.npy` array of photo ids (DeeperCluster's flickr_unique_ids.npy): keys can use `{id}` only.
//!
//! Object keys come from a template, default `data/images/{hash[0:3]}/{hash[3:6]}/{hash}.jpg`
//! (the multimedia-commons bucket layout); fields: `{id}`, `{hash}`, `{line}`, `{ext}`,
//! `{download_url}`, each optionally sliced by characters: `{hash[0:3]}`.

use super::{is_safe_relative, Source};
use crate::error::{Error, Result};
use crate::item::{Fetch, FetchError, Item, Payload};
use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, ObjectStore};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;

pub const DEFAULT_KEY_TEMPLATE: &str = "data/images/{hash[0:3]}/{hash[3:6]}/{hash}.jpg";
const METADATA_COLUMNS: usize = 25;

pub struct YfccSource {
    list: PathBuf,
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    template: Arc<KeyTemplate>,
}

impl YfccSource {
    pub fn new(list: impl Into<PathBuf>, url: &str, template: &str) -> Result<Self> {
        let list = list.into();
        let (store, prefix) = crate::store::open_store(url)?;
        let template = KeyTemplate::parse(template)?;
        if is_npy(&list) && template.uses_any(&["hash", "line", "ext", "download_url"]) {
            return Err(Error::Usage(format!(
                "{}: a .npy list has photo ids only; use a --key-template with {{id}} alone",
                list.display()
            )));
        }
        if !list.is_file() {
            return Err(Error::io(&list, std::io::Error::new(std::io::ErrorKind::NotFound, "list file not found")));
        }
        Ok(YfccSource { list, url: url.to_string(), store, prefix, template: Arc::new(template) })
    }
}

fn is_npy(p: &std::path::Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

impl Source for YfccSource {
    fn kind(&self) -> &'static str {
        "yfcc"
    }

    fn describe(&self) -> serde_json::Value {
        let list = self.list.canonicalize().unwrap_or_else(|_| self.list.clone());
        serde_json::json!({ "kind": "yfcc", "list": list, "source": self.url, "key_template": self.template.text })
    }

    fn items(&self) -> BoxStream<'static, Result<Item>> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Item>>(1024);
        let (list, template) = (self.list.clone(), self.template.clone());
        let (store, prefix) = (self.store.clone(), self.prefix.clone());
        std::thread::spawn(move || {
            let make = |index: u64, row: Row| -> Item { row_to_item(index, row, &template, &store, &prefix) };
            let result = if is_npy(&list) { list_npy(&list, &tx, make) } else { list_tsv(&list, &tx, make) };
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(async_stream::stream! {
            while let Some(item) = rx.recv().await {
                yield item;
            }
        })
    }
}

/// One parsed list entry; `Err` carries why the line is unusable (it still gets an index).
type Row = std::result::Result<Fields, String>;

#[derive(Default)]
struct Fields {
    line: String,
    id: String,
    hash: String,
    ext: String,
    download_url: String,
    video: bool,
}

fn list_tsv(path: &std::path::Path, tx: &tokio::sync::mpsc::Sender<Result<Item>>, make: impl Fn(u64, Row) -> Item) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut index = 0u64;
    for line in std::io::BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(|e| Error::io(path, e))?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let row = match cols.len() {
            METADATA_COLUMNS => Ok(Fields {
                line: cols[0].into(),
                id: cols[1].into(),
                hash: cols[2].into(),
                download_url: cols[16].into(),
                ext: cols[23].into(),
                video: cols[24].trim() == "1",
            }),
            2 => Ok(Fields { id: cols[0].into(), hash: cols[1].into(), ..Default::default() }),
            3 => Ok(Fields { line: cols[0].into(), id: cols[1].into(), hash: cols[2].into(), ..Default::default() }),
            n => Err(format!("{n} tab-separated columns (expected 25, 3 or 2)")),
        };
        if tx.blocking_send(Ok(make(index, row))).is_err() {
            return Ok(());
        }
        index += 1;
    }
    Ok(())
}

fn list_npy(path: &std::path::Path, tx: &tokio::sync::mpsc::Sender<Result<Item>>, make: impl Fn(u64, Row) -> Item) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let ids = crate::npy::read_ids(&bytes).map_err(|what| Error::BadList { path: path.into(), line: 0, what })?;
    for (index, id) in ids.into_iter().enumerate() {
        let row = Ok(Fields { id: id.to_string(), ..Default::default() });
        if tx.blocking_send(Ok(make(index as u64, row))).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn row_to_item(index: u64, row: Row, template: &KeyTemplate, store: &Arc<dyn ObjectStore>, prefix: &StorePath) -> Item {
    let fields = match row {
        Ok(f) => f,
        Err(what) => {
            let payload = Payload::Rejected(Rejection::new(Reason::BadListEntry, what));
            return Item { index, key: format!("list line {}", index + 1), label: None, payload };
        }
    };
    let key = template.render(&fields);
    let payload = if fields.video {
        Payload::Rejected(Rejection::new(Reason::Video, "marker 1 (video)"))
    } else if !is_safe_relative(&key) {
        Payload::Rejected(Rejection::new(Reason::UnsafePath, "object key is absolute or contains `..`"))
    } else {
        match StorePath::parse(format!("{prefix}/{key}").trim_start_matches('/')) {
            Ok(path) => Payload::Fetch(Box::new(ObjectFetch { store: store.clone(), path })),
            Err(e) => Payload::Rejected(Rejection::new(Reason::UnsafePath, e.to_string())),
        }
    };
    Item { index, key, label: None, payload }
}

struct ObjectFetch {
    store: Arc<dyn ObjectStore>,
    path: StorePath,
}

impl Fetch for ObjectFetch {
    fn fetch(&self, max_bytes: u64) -> BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let got = self.store.get_opts(&self.path, GetOptions::default()).await.map_err(classify)?;
            if got.meta.size > max_bytes {
                return Err(FetchError::TooLarge { bytes: got.meta.size, limit: max_bytes });
            }
            got.bytes().await.map_err(classify)
        })
    }
}

/// Missing objects are final; refusals are permanent; anything else (connection reset,
/// server errors, throttling) is worth a retry.
fn classify(e: object_store::Error) -> FetchError {
    use object_store::Error as E;
    match e {
        E::NotFound { path, .. } => FetchError::NotFound(path),
        E::InvalidPath { .. } | E::NotSupported { .. } | E::NotImplemented { .. } | E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            FetchError::Permanent(e.to_string())
        }
        other => FetchError::Transient(other.to_string()),
    }
}

/// A key template: literal text with `{field}` or `{field[a:b]}` holes.
pub struct KeyTemplate {
    text: String,
    parts: Vec<TemplatePart>,
}

enum TemplatePart {
    Literal(String),
    Field { name: String, start: usize, end: Option<usize> },
}

const TEMPLATE_FIELDS: &[&str] = &["id", "hash", "line", "ext", "download_url"];

impl KeyTemplate {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |what: String| Error::Usage(format!("--key-template {text:?}: {what}"));
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| bad("unclosed {".into()))? + open;
            let spec = &rest[open + 1..close];
            let (name, slice) = match spec.split_once('[') {
                Some((n, s)) => (n, Some(s.strip_suffix(']').ok_or_else(|| bad(format!("bad slice in {{{spec}}}")))?)),
                None => (spec, None),
            };
            if !TEMPLATE_FIELDS.contains(&name) {
                return Err(bad(format!("unknown field {name:?} (known: {})", TEMPLATE_FIELDS.join(", "))));
            }
            let (start, end) = match slice {
                None => (0, None),
                Some(s) => {
                    let (a, b) = s.split_once(':').ok_or_else(|| bad(format!("slice {s:?} needs a:b")))?;
                    let num = |v: &str| -> Result<Option<usize>> {
                        if v.is_empty() {
                            Ok(None)
                        } else {
                            v.parse().map(Some).map_err(|_| bad(format!("{v:?} is not an index")))
                        }
                    };
                    (num(a)?.unwrap_or(0), num(b)?)
                }
            };
            parts.push(TemplatePart::Field { name: name.to_string(), start, end });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_string()));
        }
        Ok(KeyTemplate { text: text.to_string(), parts })
    }

    fn uses_any(&self, names: &[&str]) -> bool {
        self.parts.iter().any(|p| matches!(p, TemplatePart::Field { name, .. } if names.contains(&name.as_str())))
    }

    fn render(&self, f: &Fields) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Literal(s) => out.push_str(s),
                TemplatePart::Field { name, start, end } => {
                    let value = match name.as_str() {
                        "id" => &f.id,
                        "hash" => &f.hash,
                        "line" => &f.line,
                        "ext" => &f.ext,
                        _ => &f.download_url,
                    };
                    let chars = value.chars().skip(*start);
                    match end {
                        Some(e) => out.extend(chars.take(e.saturating_sub(*start))),
                        None => out.extend(chars),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_renders_the_multimedia_commons_layout() {
        let t = KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).unwrap();
        let f = Fields { hash: "000a4e8c2fb200b80fa7a045065c85cb".into(), ..Default::default() };
        assert_eq!(t.render(&f), "data/images/000/a4e/000a4e8c2fb200b80fa7a045065c85cb.jpg");
    }

    #[test]
    fn bad_templates_are_usage_errors() {
        for bad in ["{nope}", "{hash", "{hash[1]}", "{hash[x:2]}"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
