//! Is this an image silt can use? Header checks by default; `--check full` decodes every pixel.
//!
//! Everything here runs on untrusted bytes: no panics escape (decoders run under
//! `catch_unwind`), and nothing is decoded before its header size passed `--max-pixels`.

use crate::quarantine::{Reason, Rejection};
use silt_shards::ContentType;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckLevel {
    /// Parse the header: format, width, height, pixel limit.
    Header,
    /// Also decode the whole image (libjpeg-turbo for JPEG); decoder errors and warnings reject.
    Full,
}

#[derive(Debug, Clone, Copy)]
pub struct ValidateOptions {
    pub check: CheckLevel,
    /// Images with more pixels are rejected before decoding (decompression bombs).
    pub max_pixels: u64,
    /// Keep images whose content is another format than their name's extension says (a PNG
    /// named .jpg). Off by default: such files are usually a broken export or a saved error.
    pub allow_format_mismatch: bool,
}

/// `--max-pixels`' default: Pillow's `MAX_IMAGE_PIXELS` (a 1 GiB RGBA image / 4 / 3).
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;

impl Default for ValidateOptions {
    /// `silt ingest`'s defaults: header check, [`DEFAULT_MAX_PIXELS`], no format mismatch.
    fn default() -> Self {
        ValidateOptions { check: CheckLevel::Header, max_pixels: DEFAULT_MAX_PIXELS, allow_format_mismatch: false }
    }
}

/// What validation learnt about an accepted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub content_type: ContentType,
    pub width: u32,
    pub height: u32,
}

/// Checks `bytes`; `key` (file name, entry or object key) is only used for its extension.
pub fn validate(key: &str, bytes: &[u8], opts: &ValidateOptions) -> Result<ImageInfo, Rejection> {
    match catch_unwind(AssertUnwindSafe(|| validate_inner(key, bytes, opts))) {
        Ok(r) => r,
        Err(panic) => Err(Rejection::new(Reason::DecoderPanic, panic_message(&panic))),
    }
}

fn validate_inner(key: &str, bytes: &[u8], opts: &ValidateOptions) -> Result<ImageInfo, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::new(Reason::Empty, "zero bytes"));
    }
    let content_type = ContentType::sniff(bytes);
    if content_type == ContentType::Unknown {
        return Err(Rejection::new(Reason::NotAnImage, format!("no image signature (starts with {})", hex_prefix(bytes))));
    }
    if !opts.allow_format_mismatch {
        if let Some(named) = type_of_extension(key) {
            if named != content_type {
                return Err(Rejection::new(
                    Reason::FormatMismatch,
                    format!("named as {} but the content is {}", named.name(), content_type.name()),
                ));
            }
        }
    }
    let (width, height) = header_size(content_type, bytes)?;
    if width == 0 || height == 0 || width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(Rejection::new(Reason::BadDimensions, format!("{width}x{height}")));
    }
    if width * height > opts.max_pixels {
        return Err(Rejection::new(
            Reason::TooManyPixels,
            format!("{width}x{height} = {} pixels > --max-pixels {}", width * height, opts.max_pixels),
        ));
    }
    if opts.check == CheckLevel::Full {
        decode_full(content_type, bytes, opts.max_pixels)?;
    }
    Ok(ImageInfo { content_type, width: width as u32, height: height as u32 })
}

/// Width and height from the header. JPEG headers go through libjpeg-turbo (it reads every
/// marker up to the first scan, so it sees broken tables too); other formats through imagesize.
fn header_size(ct: ContentType, bytes: &[u8]) -> Result<(u64, u64), Rejection> {
    if ct == ContentType::Jpeg {
        let h = turbojpeg::read_header(bytes).map_err(|e| Rejection::new(Reason::BadHeader, e.to_string()))?;
        return Ok((h.width as u64, h.height as u64));
    }
    let s = imagesize::blob_size(bytes).map_err(|e| Rejection::new(Reason::BadHeader, e.to_string()))?;
    Ok((s.width as u64, s.height as u64))
}

fn decode_full(ct: ContentType, bytes: &[u8], max_pixels: u64) -> Result<(), Rejection> {
    let bad = |e: String| Rejection::new(Reason::DecodeError, e);
    if ct == ContentType::Jpeg {
        let mut d = turbojpeg::Decompressor::new().map_err(|e| bad(e.to_string()))?;
        let h = d.read_header(bytes).map_err(|e| bad(e.to_string()))?;
        // Decode into the image's own colour model: CMYK/YCCK JPEGs are valid, just not RGB.
        let format = match h.colorspace {
            turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK => turbojpeg::PixelFormat::CMYK,
            turbojpeg::Colorspace::Gray => turbojpeg::PixelFormat::GRAY,
            _ => turbojpeg::PixelFormat::RGB,
        };
        let pitch = h.width * format.size();
        let mut pixels = vec![0u8; pitch * h.height];
        let image = turbojpeg::Image { pixels: pixels.as_mut_slice(), width: h.width, pitch, height: h.height, format };
        // libjpeg-turbo reports warnings (premature end of data, corrupt entropy data) as errors
        // here, as djpeg would print them: such files are rejected.
        return d.decompress(bytes, image).map_err(|e| bad(e.to_string()));
    }
    if ct == ContentType::Png {
        return decode_png_strict(bytes, max_pixels).map_err(bad);
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    let mut limits = image::Limits::default();
    // 16 bytes per pixel covers RGBA with 32-bit channels, the widest the decoders produce.
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    reader.decode().map(|_| ()).map_err(|e| bad(e.to_string()))
}

/// PNG through the `png` crate with checksums verified and the file read to IEND, so that
/// truncated files and broken zlib streams are caught even when the pixels came out whole.
fn decode_png_strict(bytes: &[u8], max_pixels: u64) -> Result<(), String> {
    let e = |e: png::DecodingError| e.to_string();
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(bytes),
        png::Limits { bytes: usize::try_from(max_pixels.saturating_mul(16)).unwrap_or(usize::MAX) },
    );
    decoder.ignore_checksums(false);
    // Raw samples: palette indices stay indices, so they can be checked against the palette.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(e)?;
    let size = reader.output_buffer_size().ok_or("image too large for this machine")?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(e)?;
    let info = reader.info();
    if info.color_type == png::ColorType::Indexed {
        let entries = info.palette.as_ref().map_or(0, |p| p.len() / 3);
        let depth = info.bit_depth as usize;
        let per_byte = 8 / depth.min(8);
        for row in buf.chunks(frame.line_size.max(1)).take(frame.height as usize) {
            for x in 0..frame.width as usize {
                let Some(&byte) = row.get(x / per_byte) else { break };
                let shift = 8 - depth * (x % per_byte + 1);
                let index = (byte >> shift) as usize & ((1 << depth) - 1);
                if index >= entries {
                    return Err(format!("palette index {index} but the palette has {entries} entries"));
                }
            }
        }
    }
    reader.finish().map_err(e)
}

/// The format a name's extension promises, when it names one.
fn type_of_extension(key: &str) -> Option<ContentType> {
    let (_, ext) = key.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" | "jpe" | "jfif" => ContentType::Jpeg,
        "png" => ContentType::Png,
        "webp" => ContentType::Webp,
        "gif" => ContentType::Gif,
        "bmp" => ContentType::Bmp,
        "tif" | "tiff" => ContentType::Tiff,
        _ => return None,
    })
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("decoder panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("decoder panicked: {s}")
    } else {
        "decoder panicked".into()
    }
}
