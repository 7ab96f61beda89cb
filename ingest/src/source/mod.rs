//! Sources: where items come from. Each lists its items as an async stream in a deterministic
//! order; the pipeline fetches, checks and packs them.

pub mod folder;
pub mod idx;
pub mod tar;
pub mod yfcc;
pub mod zip;

use crate::error::Result;
use crate::item::Item;
use futures::stream::BoxStream;

pub use folder::FolderSource;
pub use idx::IdxSource;
pub use tar::TarSource;
pub use yfcc::YfccSource;
pub use zip::ZipSource;

/// Image file extensions a folder or zip is scanned for (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

pub trait Source: Send + Sync {
    /// Short name for logs and the manifest: "folder", "zip", "yfcc", "tar", "idx".
    fn kind(&self) -> &'static str;

    /// The source's identity (paths, URL, list), recorded in the manifest. A resumed run must
    /// describe its source the same way.
    fn describe(&self) -> serde_json::Value;

    /// Class names by label, when the source has labels (written to the manifest).
    fn classes(&self) -> Option<Vec<String>> {
        None
    }

    /// How many items `items` will yield, when known up front (for the progress bar).
    fn len_hint(&self) -> Option<u64> {
        None
    }

    /// Every item once, numbered 0, 1, 2... in an order that is the same on every call. An
    /// `Err` is fatal (the listing itself failed); single bad items come as
    /// `Payload::Rejected` so that they keep their index.
    fn items(&self) -> BoxStream<'static, Result<Item>>;
}

/// True when `name` ends in one of `exts` (case-insensitive, without the dot); `*` takes all.
pub fn has_extension(name: &str, exts: &[String]) -> bool {
    if exts.iter().any(|e| e == "*") {
        return true;
    }
    match name.rsplit_once('.') {
        Some((_, ext)) => exts.iter().any(|e| e.eq_ignore_ascii_case(ext)),
        None => false,
    }
}

/// A relative `/`-separated path that stays inside its root: not absolute, no `..`, no drive
/// letters or backslashes (zip entries from Windows tools), no NUL.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && !path.split('/').any(|c| c == ".." )
        && !path.split('/').next().is_some_and(|c| c.len() == 2 && c.ends_with(':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unsafe_paths() {
        for bad in ["", "/etc/passwd", "../x.jpg", "a/../../x.jpg", "a\\..\\x.jpg", "C:/x.jpg", "a/..", "a\0b"] {
            assert!(!super::is_safe_relative(bad), "{bad:?}");
        }
        for good in ["x.jpg", "n01/x.JPEG", "a/..b/c.jpg", "a/./b.jpg"] {
            assert!(super::is_safe_relative(good), "{good:?}");
        }
    }
}
