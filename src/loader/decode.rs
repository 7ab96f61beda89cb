//! Decoding records into RGB pixels, behind the [`Decode`] trait so a GPU decoder (nvJPEG) can
//! take its place.
//!
//! JPEGs go through libjpeg-turbo's TurboJPEG 3 API with DCT-domain downscaling (the smallest
//! n/8 factor whose output still covers every requested crop at its target size) and, when the
//! crops cover a small part of the image, a cropped decode of just that region. Greyscale JPEGs
//! come out as RGB, CMYK/YCCK ones are converted. Other formats go through `image`; `RawU8`
//! records (MNIST) are greyscale or RGB pixel arrays.

use silt_shards::{ContentType, Record};
use std::ffi::CStr;
use turbojpeg::raw;

/// Images with more pixels than this are refused (decompression bombs).
pub const MAX_PIXELS: u64 = 1 << 28;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("libjpeg-turbo: {0}")]
    Jpeg(String),
    #[error("image: {0}")]
    Image(#[from] image::ImageError),
    #[error("unsupported content type {0:?}")]
    Unsupported(ContentType),
    #[error("raw record of {bytes} bytes does not match {width}x{height} with 1 or 3 channels")]
    RawSize { bytes: usize, width: u32, height: u32 },
    #[error("image is {width}x{height}, outside 1..={MAX_PIXELS} pixels")]
    BadSize { width: u64, height: u64 },
}

/// A packed RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: u32, height: u32) -> Self {
        RgbImage { width, height, pixels: vec![0; width as usize * height as usize * 3] }
    }
}

/// A rectangle in pixel coordinates of the full-size image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn union(&self, o: &Rect) -> Rect {
        let x = self.x.min(o.x);
        let y = self.y.min(o.y);
        Rect { x, y, w: (self.x + self.w).max(o.x + o.w) - x, h: (self.y + self.h).max(o.y + o.h) - y }
    }
}

/// What the augmentation needs from the decoder.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeRequest {
    /// The decoded image may be downscaled by up to this factor per axis (1 = full size).
    pub min_scale: f64,
    /// Only this part of the full-size image is needed (None = all of it).
    pub region: Option<Rect>,
}

impl DecodeRequest {
    pub const FULL: DecodeRequest = DecodeRequest { min_scale: 1.0, region: None };
}

/// A decoded image and where its pixels sit in the full-size image: decoded pixel (u, v)
/// covers full-size coordinates (origin_x + u / scale_x, origin_y + v / scale_y).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub image: RgbImage,
    pub full_width: u32,
    pub full_height: u32,
    pub scale_x: f64,
    pub scale_y: f64,
    pub origin_x: f64,
    pub origin_y: f64,
}

impl Decoded {
    /// Maps a rectangle of the full-size image into decoded-pixel coordinates, clamped.
    pub fn map(&self, r: &Rect) -> Rect {
        let x = ((r.x - self.origin_x) * self.scale_x).max(0.0);
        let y = ((r.y - self.origin_y) * self.scale_y).max(0.0);
        let w = (r.w * self.scale_x).min(self.image.width as f64 - x).max(1e-3);
        let h = (r.h * self.scale_y).min(self.image.height as f64 - y).max(1e-3);
        Rect { x, y, w, h }
    }
}

/// A decoder. One instance per worker thread (instances keep state such as library handles).
pub trait Decode: Send {
    /// The full-size (width, height), cheaply (JPEG header only where possible).
    fn probe(&mut self, rec: &Record) -> Result<(u32, u32), DecodeError>;
    /// Decodes the record as the request allows.
    fn decode(&mut self, rec: &Record, req: &DecodeRequest) -> Result<Decoded, DecodeError>;
}

/// The CPU decoder: TurboJPEG for JPEG, `image` for the rest.
pub struct CpuDecoder {
    tj: TjHandle,
    /// Use DCT scaling and cropped decode (off = always decode everything at full size).
    pub reduce: bool,
}

impl CpuDecoder {
    pub fn new() -> Result<Self, DecodeError> {
        Ok(CpuDecoder { tj: TjHandle::new()?, reduce: true })
    }
}

impl Decode for CpuDecoder {
    fn probe(&mut self, rec: &Record) -> Result<(u32, u32), DecodeError> {
        match rec.content_type {
            ContentType::Jpeg => {
                let h = self.tj.header(rec.bytes)?;
                Ok((h.width, h.height))
            }
            ContentType::RawU8 => raw_channels(rec).map(|_| (rec.width, rec.height)),
            _ if rec.width > 0 && rec.height > 0 => Ok((rec.width, rec.height)),
            _ => {
                let (w, h) = image::ImageReader::new(std::io::Cursor::new(rec.bytes)).with_guessed_format().map_err(image::ImageError::IoError)?.into_dimensions()?;
                Ok((w, h))
            }
        }
    }

    fn decode(&mut self, rec: &Record, req: &DecodeRequest) -> Result<Decoded, DecodeError> {
        match rec.content_type {
            ContentType::Jpeg => {
                let req = if self.reduce { *req } else { DecodeRequest::FULL };
                self.tj.decode(rec.bytes, &req)
            }
            ContentType::RawU8 => decode_raw(rec),
            ContentType::Png | ContentType::Webp | ContentType::Gif | ContentType::Bmp | ContentType::Tiff | ContentType::Unknown => {
                decode_with_image(rec.bytes)
            }
            other => Err(DecodeError::Unsupported(other)),
        }
    }
}

fn check_size(w: u64, h: u64) -> Result<(), DecodeError> {
    if w == 0 || h == 0 || w * h > MAX_PIXELS {
        return Err(DecodeError::BadSize { width: w, height: h });
    }
    Ok(())
}

fn full(image: RgbImage) -> Decoded {
    Decoded { full_width: image.width, full_height: image.height, image, scale_x: 1.0, scale_y: 1.0, origin_x: 0.0, origin_y: 0.0 }
}

fn raw_channels(rec: &Record) -> Result<usize, DecodeError> {
    let px = rec.width as usize * rec.height as usize;
    match rec.bytes.len() {
        n if px > 0 && n == px => Ok(1),
        n if px > 0 && n == 3 * px => Ok(3),
        n => Err(DecodeError::RawSize { bytes: n, width: rec.width, height: rec.height }),
    }
}

fn decode_raw(rec: &Record) -> Result<Decoded, DecodeError> {
    let pixels = match raw_channels(rec)? {
        1 => rec.bytes.iter().flat_map(|&g| [g, g, g]).collect(),
        _ => rec.bytes.to_vec(),
    };
    Ok(full(RgbImage { width: rec.width, height: rec.height, pixels }))
}

fn decode_with_image(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(image::ImageError::IoError)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(1 << 16);
    limits.max_image_height = Some(1 << 16);
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let img = reader.decode()?.into_rgb8();
    check_size(img.width() as u64, img.height() as u64)?;
    Ok(full(RgbImage { width: img.width(), height: img.height(), pixels: img.into_raw() }))
}

/// JPEG header fields the decoder needs.
#[derive(Debug, Clone, Copy)]
pub struct JpegHeader {
    pub width: u32,
    pub height: u32,
    subsamp: i32,
    colorspace: i32,
}

/// An owned TurboJPEG 3 decompression handle.
struct TjHandle(raw::tjhandle);

// The handle is used by one thread at a time (it is moved into a worker, never shared).
unsafe impl Send for TjHandle {}

impl Drop for TjHandle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { raw::tj3Destroy(self.0) }
    }
}

/// Supported DCT scaling factors as n/8.
const EIGHTHS: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn scaled(dim: u32, num: i32) -> u32 {
    (dim as u64 * num as u64).div_ceil(8) as u32
}

impl TjHandle {
    fn new() -> Result<Self, DecodeError> {
        // SAFETY: plain constructor; null means failure.
        let h = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as i32) };
        if h.is_null() {
            return Err(DecodeError::Jpeg("tj3Init failed".into()));
        }
        let t = TjHandle(h);
        // Guard against progressive-JPEG scan bombs and oversized images.
        t.set(raw::TJPARAM_TJPARAM_SCANLIMIT as i32, 500)?;
        Ok(t)
    }

    fn error(&self) -> DecodeError {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle.
        let msg = unsafe { CStr::from_ptr(raw::tj3GetErrorStr(self.0)) };
        DecodeError::Jpeg(msg.to_string_lossy().into_owned())
    }

    fn set(&self, param: i32, value: i32) -> Result<(), DecodeError> {
        // SAFETY: valid handle, plain integers.
        if unsafe { raw::tj3Set(self.0, param, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }

    fn header(&mut self, bytes: &[u8]) -> Result<JpegHeader, DecodeError> {
        // SAFETY: the pointer/length pair describes `bytes`, which outlives the call.
        if unsafe { raw::tj3DecompressHeader(self.0, bytes.as_ptr(), bytes.len() as raw::size_t) } != 0 {
            return Err(self.error());
        }
        // SAFETY: valid handle.
        let get = |p: raw::TJPARAM| unsafe { raw::tj3Get(self.0, p as i32) };
        let (w, h) = (get(raw::TJPARAM_TJPARAM_JPEGWIDTH), get(raw::TJPARAM_TJPARAM_JPEGHEIGHT));
        check_size(w.max(0) as u64, h.max(0) as u64)?;
        Ok(JpegHeader {
            width: w as u32,
            height: h as u32,
            subsamp: get(raw::TJPARAM_TJPARAM_SUBSAMP),
            colorspace: get(raw::TJPARAM_TJPARAM_COLORSPACE),
        })
    }

    fn decode(&mut self, bytes: &[u8], req: &DecodeRequest) -> Result<Decoded, DecodeError> {
        let hdr = self.header(bytes)?;
        // Smallest n/8 with n/8 >= min_scale (so the decoded crop still covers the target size).
        let num = EIGHTHS.iter().copied().find(|&n| n as f64 / 8.0 >= req.min_scale.min(1.0) - 1e-9).unwrap_or(8);
        // libjpeg-turbo lists its factors in lowest terms (1/4, not 2/8).
        let g = gcd(num, 8);
        let sf = raw::tjscalingfactor { num: num / g, denom: 8 / g };
        // SAFETY: valid handle; the factor is one libjpeg-turbo supports (n/8, n = 1..16).
        if unsafe { raw::tj3SetScalingFactor(self.0, sf) } != 0 {
            return Err(self.error());
        }
        let (sw, sh) = (scaled(hdr.width, num), scaled(hdr.height, num));
        let (sx, sy) = (sw as f64 / hdr.width as f64, sh as f64 / hdr.height as f64);
        // Cropped decode when the needed region is small enough to be worth it.
        let mut region = raw::tjregion { x: 0, y: 0, w: 0, h: 0 };
        let cmyk = hdr.colorspace == raw::TJCS_TJCS_CMYK as i32 || hdr.colorspace == raw::TJCS_TJCS_YCCK as i32;
        if let (Some(r), Some(mcu)) = (req.region, mcu_width(hdr.subsamp)) {
            if r.w * r.h < 0.5 * hdr.width as f64 * hdr.height as f64 {
                let step = scaled(mcu, num).max(1) as f64;
                let x0 = ((r.x * sx).floor() / step).floor() * step;
                let y0 = (r.y * sy).floor().max(0.0);
                let x1 = ((r.x + r.w) * sx).ceil().min(sw as f64);
                let y1 = ((r.y + r.h) * sy).ceil().min(sh as f64);
                if x1 > x0 && y1 > y0 {
                    region = raw::tjregion { x: x0 as i32, y: y0 as i32, w: (x1 - x0) as i32, h: (y1 - y0) as i32 };
                }
            }
        }
        // SAFETY: valid handle; header was read; the region lies inside the scaled image with x on
        // an iMCU boundary (or is all zeros = uncropped).
        if unsafe { raw::tj3SetCroppingRegion(self.0, region) } != 0 {
            return Err(self.error());
        }
        let (ow, oh) = if region.w > 0 { (region.w as u32, region.h as u32) } else { (sw, sh) };
        let (pf, channels) = if cmyk { (raw::TJPF_TJPF_CMYK, 4) } else { (raw::TJPF_TJPF_RGB, 3) };
        let mut buf = vec![0u8; ow as usize * oh as usize * channels];
        // SAFETY: `buf` holds exactly ow*oh pixels of the requested format with pitch ow*channels;
        // libjpeg-turbo writes the (scaled, cropped) image of that size.
        let rc = unsafe {
            raw::tj3Decompress8(self.0, bytes.as_ptr(), bytes.len() as raw::size_t, buf.as_mut_ptr(), (ow as usize * channels) as i32, pf)
        };
        if rc != 0 {
            return Err(self.error());
        }
        let pixels = if cmyk { cmyk_to_rgb(&buf) } else { buf };
        Ok(Decoded {
            image: RgbImage { width: ow, height: oh, pixels },
            full_width: hdr.width,
            full_height: hdr.height,
            scale_x: sx,
            scale_y: sy,
            origin_x: region.x as f64 / sx,
            origin_y: region.y as f64 / sy,
        })
    }
}

/// iMCU width for a subsampling code; None when unknown (then no cropped decode).
fn mcu_width(subsamp: i32) -> Option<u32> {
    match subsamp as raw::TJSAMP {
        raw::TJSAMP_TJSAMP_444 | raw::TJSAMP_TJSAMP_GRAY | raw::TJSAMP_TJSAMP_440 => Some(8),
        raw::TJSAMP_TJSAMP_422 | raw::TJSAMP_TJSAMP_420 => Some(16),
        raw::TJSAMP_TJSAMP_411 => Some(32),
        raw::TJSAMP_TJSAMP_441 => Some(8),
        _ => None,
    }
}

/// libjpeg's CMYK output of Adobe JPEGs is inverted (0 = full ink); Pillow's conversion of that
/// is R = C * K / 255 on the stored values, likewise G, B.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for p in cmyk.chunks_exact(4) {
        let k = p[3] as u32;
        for c in &p[..3] {
            out.push(((*c as u32 * k + 127) / 255) as u8);
        }
    }
    out
}

/// Decodes everything at full size (tests, `show`, reference paths).
pub fn decode_full(dec: &mut dyn Decode, rec: &Record) -> Result<RgbImage, DecodeError> {
    dec.decode(rec, &DecodeRequest::FULL).map(|d| d.image)
}
