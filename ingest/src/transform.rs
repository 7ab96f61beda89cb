//! Optional resize + re-encode (`--resize-shorter N`, `--quality Q`): images whose shorter side
//! exceeds N are scaled so that it equals N (aspect kept, antialiased bilinear filter, as
//! torchvision's Resize) and stored as JPEG at quality Q. Smaller images are kept byte for byte.
//!
//! `--store-raw`: every image is stored decoded (after the resize, if any) as RGB pixels
//! (`ContentType::RawU8`, width × height × 3 bytes), as FFCV's `raw` write mode does: the loader
//! then only copies and crops, no decode, at about ten times the bytes of a JPEG.
//!
//! JPEGs are decoded with libjpeg-turbo's scaled DCT first (1/2, 1/4, 1/8 while the shorter side
//! stays >= N), which skips most of the decode work for large photos.

use crate::quarantine::{Reason, Rejection};
use crate::validate::ImageInfo;
use fast_image_resize::{images::Image, FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use silt_shards::ContentType;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformOptions {
    /// Scale images whose shorter side is longer down to this (None: keep every size).
    pub resize_shorter: Option<u32>,
    /// JPEG quality of re-encoded images (1-100).
    pub quality: i32,
    /// Store decoded RGB pixels instead of an encoded image.
    pub raw: bool,
}

/// The new bytes and size when the image was resized or is stored raw; `None` when it is kept
/// as it is.
pub fn transform(bytes: &[u8], info: &ImageInfo, opts: &TransformOptions) -> Result<Option<(Vec<u8>, ImageInfo)>, Rejection> {
    if !opts.raw && resize_to(info, opts).is_none() {
        return Ok(None);
    }
    let fail = |e: String| Rejection::new(Reason::TransformError, e);
    match catch_unwind(AssertUnwindSafe(|| resize_encode(bytes, info, opts))) {
        Ok(r) => r.map(Some).map_err(fail),
        Err(_) => Err(fail("resize/encode panicked".into())),
    }
}

/// The shorter side this image is scaled to, when it is longer than `--resize-shorter`.
fn resize_to(info: &ImageInfo, opts: &TransformOptions) -> Option<u32> {
    opts.resize_shorter.filter(|&n| info.width.min(info.height) > n)
}

fn resize_encode(bytes: &[u8], info: &ImageInfo, opts: &TransformOptions) -> Result<(Vec<u8>, ImageInfo), String> {
    let shorter = resize_to(info, opts);
    let (w, h, rgb) = decode_rgb(bytes, info, shorter.unwrap_or(u32::MAX))?;
    let (nw, nh, pixels) = match shorter {
        Some(n) => {
            // From the original size, so that the DCT pre-scaling does not change the rounding.
            let (nw, nh) = target_size(info.width, info.height, n);
            let src = Image::from_vec_u8(w, h, rgb, PixelType::U8x3).map_err(|e| e.to_string())?;
            let mut dst = Image::new(nw, nh, PixelType::U8x3);
            Resizer::new()
                .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)))
                .map_err(|e| e.to_string())?;
            (nw, nh, dst.into_vec())
        }
        None => (w, h, rgb),
    };
    if opts.raw {
        return Ok((pixels, ImageInfo { content_type: ContentType::RawU8, width: nw, height: nh }));
    }
    let image = turbojpeg::Image { pixels: &pixels[..], width: nw as usize, pitch: nw as usize * 3, height: nh as usize, format: turbojpeg::PixelFormat::RGB };
    let jpeg = turbojpeg::compress(image, opts.quality, turbojpeg::Subsamp::Sub2x2).map_err(|e| e.to_string())?;
    Ok((jpeg.to_vec(), ImageInfo { content_type: ContentType::Jpeg, width: nw, height: nh }))
}

/// Shorter side becomes exactly `shorter`; the longer one keeps the aspect ratio (rounded).
pub fn target_size(w: u32, h: u32, shorter: u32) -> (u32, u32) {
    if w <= h {
        (shorter, ((h as u64 * shorter as u64 + w as u64 / 2) / w as u64).max(1) as u32)
    } else {
        (((w as u64 * shorter as u64 + h as u64 / 2) / h as u64).max(1) as u32, shorter)
    }
}

/// RGB pixels (width, height, bytes); JPEGs at the smallest DCT scale that keeps the shorter
/// side >= `min_shorter` (`u32::MAX`: full size).
pub fn decode_rgb(bytes: &[u8], info: &ImageInfo, min_shorter: u32) -> Result<(u32, u32, Vec<u8>), String> {
    if info.content_type == ContentType::Jpeg {
        // CMYK and other colour spaces libjpeg-turbo will not turn into RGB: the image crate can
        if let Ok(decoded) = decode_jpeg_rgb(bytes, min_shorter) {
            return Ok(decoded);
        }
    }
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?.into_rgb8();
    Ok((img.width(), img.height(), img.into_raw()))
}

fn decode_jpeg_rgb(bytes: &[u8], min_shorter: u32) -> Result<(u32, u32, Vec<u8>), String> {
    let mut d = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
    let header = d.read_header(bytes).map_err(|e| e.to_string())?;
    for denom in [8, 4, 2] {
        let f = turbojpeg::ScalingFactor::new(1, denom);
        if f.scale(header.width.min(header.height)) >= min_shorter as usize {
            d.set_scaling_factor(f).map_err(|e| e.to_string())?;
            break;
        }
    }
    let scaled = header.scaled(d.scaling_factor());
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; scaled.width * scaled.height * 3],
        width: scaled.width,
        pitch: scaled.width * 3,
        height: scaled.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(bytes, image.as_deref_mut()).map_err(|e| e.to_string())?;
    Ok((scaled.width as u32, scaled.height as u32, image.pixels))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shorter_side_becomes_the_target() {
        assert_eq!(super::target_size(4000, 3000, 256), (341, 256));
        assert_eq!(super::target_size(3000, 4000, 256), (256, 341));
        assert_eq!(super::target_size(300, 300, 256), (256, 256));
    }
}
