//! Image grids: many small RGB images laid out in rows, e.g. the 9 images that activate a filter
//! most, the images nearest each cluster's mean (DeepCluster `visu/`), or a loader's augmented
//! views (`silt loader show`).

use super::ReportError;
use image::{Rgb, RgbImage};
use std::path::Path;

/// Background of the grid (white).
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);

/// Lays out `images` (width, height, RGB bytes row-major) in rows of `cols` cells separated and
/// surrounded by `pad` pixels of white. Every cell is as large as the largest image; smaller
/// images are centred in their cell. The last row may be partly empty.
pub fn image_grid(images: &[(u32 /*w*/, u32 /*h*/, Vec<u8> /*RGB*/)], cols: usize, pad: u32) -> Result<RgbImage, ReportError> {
    if images.is_empty() {
        return Err(ReportError::Invalid("image grid: no images".into()));
    }
    if cols == 0 {
        return Err(ReportError::Invalid("image grid: cols must be at least 1".into()));
    }
    for (i, (w, h, px)) in images.iter().enumerate() {
        if *w == 0 || *h == 0 || px.len() as u64 != *w as u64 * *h as u64 * 3 {
            return Err(ReportError::Invalid(format!("image grid: image {i} is {w}×{h} but has {} bytes (expected w·h·3)", px.len())));
        }
    }
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let cell_w = images.iter().map(|i| i.0).max().unwrap_or(1);
    let cell_h = images.iter().map(|i| i.1).max().unwrap_or(1);
    let width = cols as u64 * cell_w as u64 + (cols as u64 + 1) * pad as u64;
    let height = rows as u64 * cell_h as u64 + (rows as u64 + 1) * pad as u64;
    if width * height > 1 << 30 {
        return Err(ReportError::Invalid(format!("image grid: {width}×{height} pixels is too large")));
    }
    let mut grid = RgbImage::from_pixel(width as u32, height as u32, BACKGROUND);
    for (i, (w, h, px)) in images.iter().enumerate() {
        let (r, c) = ((i / cols) as u32, (i % cols) as u32);
        let x0 = pad + c * (cell_w + pad) + (cell_w - w) / 2;
        let y0 = pad + r * (cell_h + pad) + (cell_h - h) / 2;
        for y in 0..*h {
            let row = &px[(y * w * 3) as usize..((y + 1) * w * 3) as usize];
            for x in 0..*w {
                let p = &row[(x * 3) as usize..(x * 3 + 3) as usize];
                grid.put_pixel(x0 + x, y0 + y, Rgb([p[0], p[1], p[2]]));
            }
        }
    }
    Ok(grid)
}

/// An RGB image: width, height, bytes row-major.
pub type Rgb8 = (u32, u32, Vec<u8>);

/// Image `i` of a loader view batch (planar bytes, [n, 3, size, size]) as row-major RGB.
pub fn planar_image(data: &[u8], size: u32, i: usize) -> Result<Rgb8, ReportError> {
    let plane = size as usize * size as usize;
    let img = data.get(i * 3 * plane..(i + 1) * 3 * plane).ok_or_else(|| ReportError::Invalid(format!("image {i} is beyond the batch ({} bytes)", data.len())))?;
    let px = (0..plane).flat_map(|p| [img[p], img[plane + p], img[2 * plane + p]]).collect();
    Ok((size, size, px))
}

/// Nearest-neighbour upscaling by an integer factor (small images, e.g. 28-pixel MNIST, stay
/// readable in a grid).
pub fn zoom(img: Rgb8, factor: u32) -> Rgb8 {
    if factor <= 1 {
        return img;
    }
    let (w, h, px) = img;
    let (zw, zh) = (w * factor, h * factor);
    let mut out = Vec::with_capacity(zw as usize * zh as usize * 3);
    for y in 0..zh {
        for x in 0..zw {
            let p = (((y / factor) * w + x / factor) * 3) as usize;
            out.extend_from_slice(&px[p..p + 3]);
        }
    }
    (zw, zh, out)
}

/// Saves an image as PNG (the format follows from nothing but this function: any extension).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), ReportError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    }
    img.save_with_format(path, image::ImageFormat::Png).map_err(|source| ReportError::Image { path: path.to_path_buf(), source })
}
