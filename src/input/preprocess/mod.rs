//! Image decoding and CLIP preprocessing with bit-level parity to open_clip's eval transform on PIL.
//!
//! open_clip (stock ViT-B-16) runs `Resize(224, bicubic)` on the shortest side, then `CenterCrop(224)`,
//! `convert("RGB")`, `ToTensor` and `Normalize`, all on a PIL image. This module reproduces each step:
//!
//! * The resize runs in the image's PIL mode, before the RGB conversion. Modes `P` (palette) and `1`
//!   (1-bit) use NEAREST, because PIL forces it. `RGBA`/`LA` are resized premultiplied and then
//!   un-premultiplied. `I;16` (16-bit grey) is resized in 16 bits. Everything else uses PIL's 8-bit
//!   fixed-point convolution. The resampling code below is a port of Pillow's `Resample.c` and
//!   `Geometry.c` (`ImagingScaleAffine`), so it gives the same integers.
//! * `convert("RGB")` drops alpha without compositing, maps palettes while ignoring transparency, and
//!   clips 16-bit grey to 255.
//! * The crop offset is `int(round((h - 224) / 2.0))`, with Python's round-half-to-even.
//! * JPEG pixels come from `jpeg.rs`, a decoder that reproduces libjpeg-turbo (Pillow's decoder). The
//!   image crate's zune-jpeg rounds chroma upsampling and the IDCT differently, which puts it up to
//!   6/255 away. PNG, WebP, GIF and BMP are decoded by the image crate, which matches Pillow there,
//!   except for two BMP layouts that `decode.rs` decodes itself as Pillow does: 16 bits per pixel
//!   (Pillow expands a 5/6-bit channel as `v * 255 / 31` (or `/ 63`) truncated, the image crate
//!   rounds; bitfield layouts other than 5-5-5 and 5-6-5 are refused, as Pillow refuses them) and
//!   RLE8/RLE4 (pixels skipped by an end-of-line or delta code are palette index 0 in Pillow, black
//!   in the image crate; RLE data that ends before the last pixel is refused, as Pillow refuses it).
//!   JPEG variants that `jpeg.rs` refuses (12-bit, lossless, corrupt entropy data) fall back to the
//!   image crate, without the parity guarantee. Arithmetic-coded JPEGs are refused by both decoders,
//!   although Pillow reads them.
//!
//! The references were made with Pillow 13.0.0. That version runs the vertical resize pass first when
//! the height shrinks by more than twice as many pixels as the width. Pillow 12 and older always ran
//! the horizontal pass first, which can move a tall downscaled image by 1/255.
//!
//! One deliberate difference: EXIF orientation is applied here, and open_clip does not apply it.
//! The fixtures in `tests/fixtures/preprocess` are produced with `ImageOps.exif_transpose` first.
//! It is read, as browsers read it, from a JPEG's first `Exif` APP1 segment, a PNG's `eXIf` chunk
//! and a WebP's `EXIF` chunk; an orientation only in XMP (`tiff:Orientation`) is ignored, as
//! browsers ignore it (Pillow's `exif_transpose` would apply it; `chelsea_xmp6_96x64.png` and
//! `chelsea_xmp6_lossy_96x64.webp` carry only an XMP orientation 6, and their references are not
//! rotated). Orientations 2..8 are covered in every format (`*_exif*` fixtures). A damaged EXIF block
//! means no orientation, never an error.
//!
//! Hostile inputs: every size check (`crate::limits`: pixel cap, minimum side, aspect ratio) runs on
//! the size a decoder reports before it allocates, whichever decoder finally decodes (`decode.rs`);
//! JPEG markers are read as libjpeg reads them, the number of scans and the work they ask for are
//! bounded (`jpeg.rs`), and sizes taken from headers use checked arithmetic (wasm32 has a 32-bit
//! `usize`). No input may panic: in the browser a panic ends the wasm engine.
//!
//! Core functions take bytes and do no file or thread work, so they build for wasm32.

mod decode;
mod jpeg;
mod resample;

use image::{DynamicImage, RgbImage};

use decode::{check_dims, decode, Decoded};
use resample::{Filter, Rect};

pub use crate::config::{Interpolation, PreprocessConfig, ResizeMode};
pub use crate::error::PreprocessError;
pub use crate::limits::{MAX_ASPECT, MIN_SIDE};

/// Decodes an image, applies its EXIF orientation and converts it to RGB as PIL's `convert("RGB")`
/// does. No resizing and no shape checks, apart from the pixel cap.
pub fn load_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    let (decoded, _) = decode(bytes, max_pixels, false)?;
    let (w, h) = decoded.dims();
    Ok(decoded.to_rgb(Rect { x: 0, y: 0, w, h }))
}

/// The part of the image the model sees, in the decoded image's pixels (after its EXIF
/// orientation, as a browser shows it): the centre crop mapped back through the resize. Shown on
/// the web page's preview; `x + width <= image_width` and `y + height <= image_height`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CropBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub image_width: u32,
    pub image_height: u32,
}

/// Returns the `size`×`size` RGB image that open_clip feeds to `ToTensor` (the output before `Normalize`).
pub fn crop_rgb(bytes: &[u8], cfg: &PreprocessConfig) -> Result<RgbImage, PreprocessError> {
    crop_rgb_with_box(bytes, cfg).map(|(rgb, _)| rgb)
}

/// [`crop_rgb`] and where in the image the crop lies.
pub fn crop_rgb_with_box(bytes: &[u8], cfg: &PreprocessConfig) -> Result<(RgbImage, CropBox), PreprocessError> {
    crop_rgb_region(bytes, cfg, None)
}

/// A rectangle of an image that the user chose (in the decoded image's pixels, after its EXIF
/// orientation, as a browser shows it): the model then sees this part, preprocessed as if it were
/// the whole photo (PIL: `img.crop(box)` before the transform).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// Inside an image of `image_width`×`image_height`, and a shape the model accepts.
    fn check(&self, image_width: u32, image_height: u32, cfg: &PreprocessConfig) -> Result<Rect, PreprocessError> {
        let inside = |at: u32, len: u32, of: u32| at.checked_add(len).is_some_and(|end| end <= of);
        if !inside(self.x, self.width, image_width) || !inside(self.y, self.height, image_height) {
            let Region { x, y, width, height } = *self;
            return Err(PreprocessError::RegionOutside { x, y, width, height, image_width, image_height });
        }
        check_dims(self.width, self.height, cfg.max_pixels, true)?;
        Ok(Rect { x: self.x, y: self.y, w: self.width, h: self.height })
    }
}

/// [`crop_rgb_with_box`] of a chosen region (the whole image for `None`); the crop box is in the
/// whole image's pixels.
pub fn crop_rgb_region(
    bytes: &[u8],
    cfg: &PreprocessConfig,
    region: Option<Region>,
) -> Result<(RgbImage, CropBox), PreprocessError> {
    cfg.validate()?;
    let (decoded, _) = decode(bytes, cfg.max_pixels, true)?;
    let Some(region) = region else { return Ok(resize_crop(decoded, cfg)) };
    let (w, h) = decoded.dims();
    let rect = region.check(w, h, cfg)?;
    let (rgb, inner) = resize_crop(decoded.crop(rect), cfg);
    let boxed =
        CropBox { x: inner.x + rect.x as f64, y: inner.y + rect.y as f64, image_width: w, image_height: h, ..inner };
    Ok((rgb, boxed))
}

/// The crop box for an image of `width`×`height` pixels (no decoding; the same plan as the crop).
pub fn crop_box(width: u32, height: u32, cfg: &PreprocessConfig) -> CropBox {
    resize_plan(width, height, cfg).2
}

/// As [`crop_rgb`] for raw RGBA pixels (a canvas `ImageData`, a camera frame); alpha is dropped,
/// as `convert("RGB")` of an opaque image would.
pub fn crop_rgba(rgba: &[u8], width: u32, height: u32, cfg: &PreprocessConfig) -> Result<RgbImage, PreprocessError> {
    crop_rgba_with_box(rgba, width, height, cfg, None).map(|(rgb, _)| rgb)
}

/// [`crop_rgba`] of a chosen region (the whole image for `None`), and where in the image the
/// crop lies.
pub fn crop_rgba_with_box(
    rgba: &[u8],
    width: u32,
    height: u32,
    cfg: &PreprocessConfig,
    region: Option<Region>,
) -> Result<(RgbImage, CropBox), PreprocessError> {
    cfg.validate()?;
    // The shape checks run first, so that no size derived from width and height is computed for
    // an image that is refused; the byte count in u64 (width * height * 4 overflows a 32-bit usize).
    check_dims(width, height, cfg.max_pixels, true)?;
    let expected = (width as u64).checked_mul(height as u64).and_then(|n| n.checked_mul(4));
    let length_error = || PreprocessError::Decode {
        format: "RGBA",
        message: format!(
            "{} bytes for {width}x{height} pixels (expected {})",
            rgba.len(),
            expected.map_or_else(|| "more".to_string(), |n| n.to_string())
        ),
    };
    if expected != Some(rgba.len() as u64) {
        return Err(length_error());
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let img = RgbImage::from_raw(width, height, rgb).ok_or_else(length_error)?;
    let decoded = Decoded::U8 { img: DynamicImage::ImageRgb8(img), nearest: false };
    let Some(region) = region else { return Ok(resize_crop(decoded, cfg)) };
    let rect = region.check(width, height, cfg)?;
    let (rgb, inner) = resize_crop(decoded.crop(rect), cfg);
    let boxed = CropBox {
        x: inner.x + rect.x as f64,
        y: inner.y + rect.y as f64,
        image_width: width,
        image_height: height,
        ..inner
    };
    Ok((rgb, boxed))
}

/// The resized size and the crop in it, and the crop mapped back to the image.
fn resize_plan(w: u32, h: u32, cfg: &PreprocessConfig) -> (u32, u32, CropBox, Rect) {
    let s = cfg.size;
    let (nw, nh) = match cfg.resize_mode {
        ResizeMode::Squash => (s, s),
        ResizeMode::Shortest => {
            // torchvision `_compute_resized_output_size`: new_long = int(size * long / short).
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let new_long = (s as f64 * long as f64 / short as f64) as u32;
            if w <= h {
                (s, new_long)
            } else {
                (new_long, s)
            }
        }
    };
    let crop = Rect { x: center_offset(nw, s), y: center_offset(nh, s), w: s, h: s };
    let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
    let boxed = CropBox {
        x: crop.x as f64 * sx,
        y: crop.y as f64 * sy,
        width: (s as f64 * sx).min(w as f64),
        height: (s as f64 * sy).min(h as f64),
        image_width: w,
        image_height: h,
    };
    (nw, nh, boxed, crop)
}

fn resize_crop(decoded: Decoded, cfg: &PreprocessConfig) -> (RgbImage, CropBox) {
    let (w, h) = decoded.dims();
    let s = cfg.size;
    let (nw, nh, boxed, crop) = resize_plan(w, h, cfg);
    let filter = match cfg.interpolation {
        Interpolation::Bicubic => Filter::Bicubic,
        Interpolation::Bilinear => Filter::Bilinear,
    };
    (decoded.resize_crop(nw, nh, crop, filter).to_rgb(Rect { x: 0, y: 0, w: s, h: s }), boxed)
}

/// `ToTensor` + `Normalize`: CHW float32, `(v / 255 - mean) / std`, computed in f32 as torch does.
pub fn normalize(rgb: &RgbImage, cfg: &PreprocessConfig) -> Vec<f32> {
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p.0[c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
        }
    }
    out
}

/// Decode, resize, crop and normalise: the CHW tensor data (length `3 * size * size`) for the model.
pub fn preprocess(bytes: &[u8], cfg: &PreprocessConfig) -> Result<Vec<f32>, PreprocessError> {
    Ok(normalize(&crop_rgb(bytes, cfg)?, cfg))
}

/// Reads and preprocesses an image file (native builds only).
#[cfg(not(target_family = "wasm"))]
pub fn preprocess_file(path: &std::path::Path, cfg: &PreprocessConfig) -> Result<Vec<f32>, PreprocessError> {
    let bytes = std::fs::read(path).map_err(|e| PreprocessError::Decode {
        format: "image file",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    preprocess(&bytes, cfg)
}

/// torchvision CenterCrop offset: `int(round((n - size) / 2.0))`, Python rounding half to even.
fn center_offset(n: u32, size: u32) -> u32 {
    let d = n.saturating_sub(size);
    let k = d / 2;
    if d % 2 == 1 && k % 2 == 1 {
        k + 1
    } else {
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offset_rounds_half_to_even() {
        // Python: int(round(d / 2.0)) for d = 0..6 -> 0, 0, 1, 2, 2, 2, 3
        let got: Vec<u32> = (0..7).map(|d| center_offset(224 + d, 224)).collect();
        assert_eq!(got, vec![0, 0, 1, 2, 2, 2, 3]);
    }

    #[test]
    fn open_clip_config_parses_and_rejects_unknown_values() {
        let v = serde_json::json!({"mean": [0.5, 0.5, 0.5], "std": 0.5, "interpolation": "bilinear", "resize_mode": "squash"});
        let cfg = PreprocessConfig::from_open_clip(&v, 256).unwrap();
        assert_eq!(
            (cfg.size, cfg.std, cfg.interpolation, cfg.resize_mode),
            (256, [0.5; 3], Interpolation::Bilinear, ResizeMode::Squash)
        );
        let bad = serde_json::json!({"interpolation": "lanczos"});
        let e = PreprocessConfig::from_open_clip(&bad, 224).unwrap_err().to_string();
        assert!(e.contains("lanczos"), "{e}");
        let bad = serde_json::json!({"resize_mode": "longest"});
        assert!(PreprocessConfig::from_open_clip(&bad, 224).unwrap_err().to_string().contains("longest"));
    }

    #[test]
    fn normalize_matches_torch_formula() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([0, 128, 255]));
        let cfg = PreprocessConfig::default();
        let t = normalize(&img, &cfg);
        assert_eq!(t.len(), 6);
        assert_eq!(t[0], (0.0 - cfg.mean[0]) / cfg.std[0]);
        assert_eq!(t[2], (128.0f32 / 255.0 - cfg.mean[1]) / cfg.std[1]);
        assert_eq!(t[5], (1.0 - cfg.mean[2]) / cfg.std[2]);
    }
}
