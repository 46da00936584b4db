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
//!   6/255 away. PNG, WebP, GIF and BMP are decoded by the image crate, which already matches Pillow.
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
//!
//! Core functions take bytes and do no file or thread work, so they build for wasm32.

use std::io::Cursor;

mod jpeg;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};
use serde::{Deserialize, Serialize};

/// The shorter image side must be at least this many pixels.
pub const MIN_SIDE: u32 = 16;
/// The longer side may be at most this many times the shorter one.
pub const MAX_ASPECT: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty image: the input has zero bytes")]
    Empty,
    #[error("unrecognised image data: not a JPEG, PNG, WebP, GIF or BMP file")]
    UnknownFormat,
    #[error("unsupported image format {0}: expected JPEG, PNG, WebP, GIF or BMP")]
    UnsupportedFormat(String),
    #[error(
        "image is {width}x{height} ({:.2} megapixels), above the limit of {:.2} megapixels: crop it to the skin area or make it smaller",
        *pixels as f64 / 1e6, *max_pixels as f64 / 1e6
    )]
    TooManyPixels { width: u32, height: u32, pixels: u64, max_pixels: u64 },
    #[error("image is {width}x{height}: the shorter side must be at least {MIN_SIDE} pixels")]
    TooSmall { width: u32, height: u32 },
    #[error("image is {width}x{height}: the aspect ratio is above {MAX_ASPECT}:1")]
    ExtremeAspect { width: u32, height: u32 },
    #[error("corrupt or truncated {format} image: {message}")]
    Decode { format: &'static str, message: String },
    #[error("invalid preprocessing config: {0}")]
    Config(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bicubic,
    Bilinear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Resize the shortest side to `size`, then centre-crop `size`×`size`.
    Shortest,
    /// Resize straight to `size`×`size`, ignoring the aspect ratio.
    Squash,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct PreprocessConfig {
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: Interpolation,
    pub resize_mode: ResizeMode,
    pub max_pixels: u64,
}

impl Default for PreprocessConfig {
    #[allow(clippy::excessive_precision)] // OpenAI CLIP's constants, spelled as open_clip spells them
    fn default() -> Self {
        Self {
            size: 224,
            mean: [0.48145466, 0.4578275, 0.40821073],
            std: [0.26862954, 0.26130258, 0.27577711],
            interpolation: Interpolation::Bicubic,
            resize_mode: ResizeMode::Shortest,
            max_pixels: 100_000_000,
        }
    }
}

impl PreprocessConfig {
    /// Reads open_clip's `preprocess_cfg` object (`{"mean", "std", "interpolation", "resize_mode",
    /// optional "size"}`). Missing keys take open_clip's defaults. `image_size` is the model's input
    /// size, used when the object has no `size`.
    pub fn from_open_clip(value: &serde_json::Value, image_size: u32) -> Result<Self, PreprocessError> {
        let err = |m: String| PreprocessError::Config(m);
        let obj = value.as_object().ok_or_else(|| err(format!("preprocess_cfg must be an object, got {value}")))?;
        let mut cfg = Self { size: image_size, ..Self::default() };
        if let Some(v) = obj.get("size").filter(|v| !v.is_null()) {
            cfg.size =
                parse_size(v).ok_or_else(|| err(format!("size must be an integer or a square [h, w], got {v}")))?;
        }
        for (key, slot) in [("mean", &mut cfg.mean), ("std", &mut cfg.std)] {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                *slot = parse_triple(v).ok_or_else(|| err(format!("{key} must be a number or 3 numbers, got {v}")))?;
            }
        }
        if let Some(v) = obj.get("interpolation").filter(|v| !v.is_null()) {
            cfg.interpolation = match v.as_str() {
                Some("bicubic") | Some("random") => Interpolation::Bicubic, // open_clip: random -> bicubic at eval
                Some("bilinear") => Interpolation::Bilinear,
                _ => return Err(err(format!("unsupported interpolation {v} (expected \"bicubic\" or \"bilinear\")"))),
            };
        }
        if let Some(v) = obj.get("resize_mode").filter(|v| !v.is_null()) {
            cfg.resize_mode = match v.as_str() {
                Some("shortest") => ResizeMode::Shortest,
                Some("squash") => ResizeMode::Squash,
                _ => return Err(err(format!("unsupported resize_mode {v} (expected \"shortest\" or \"squash\")"))),
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), PreprocessError> {
        if self.size == 0 || self.size > 4096 {
            return Err(PreprocessError::Config(format!("size {} is outside 1..=4096", self.size)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(PreprocessError::Config(format!(
                "mean {:?} must be finite and std {:?} finite and positive",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

fn parse_size(v: &serde_json::Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    match v.as_array()?.as_slice() {
        [h, w] if h == w => u32::try_from(h.as_u64()?).ok(),
        _ => None,
    }
}

fn parse_triple(v: &serde_json::Value) -> Option<[f32; 3]> {
    if let Some(x) = v.as_f64() {
        return Some([x as f32; 3]);
    }
    match v.as_array()?.as_slice() {
        [a, b, c] => Some([a.as_f64()? as f32, b.as_f64()? as f32, c.as_f64()? as f32]),
        _ => None,
    }
}

/// Decodes an image, applies its EXIF orientation and converts it to RGB as PIL's `convert("RGB")`
/// does. No resizing and no shape checks, apart from the pixel cap.
pub fn load_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, PreprocessError> {
    let (decoded, _) = decode(bytes, max_pixels, false)?;
    let (w, h) = decoded.dims();
    Ok(decoded.to_rgb(Rect { x: 0, y: 0, w, h }))
}

/// Returns the `size`×`size` RGB image that open_clip feeds to `ToTensor` (the output before `Normalize`).
pub fn crop_rgb(bytes: &[u8], cfg: &PreprocessConfig) -> Result<RgbImage, PreprocessError> {
    cfg.validate()?;
    let (decoded, _) = decode(bytes, cfg.max_pixels, true)?;
    Ok(resize_crop(decoded, cfg))
}

/// As [`crop_rgb`] for raw RGBA pixels (a canvas `ImageData`, a camera frame); alpha is dropped,
/// as `convert("RGB")` of an opaque image would.
pub fn crop_rgba(rgba: &[u8], width: u32, height: u32, cfg: &PreprocessConfig) -> Result<RgbImage, PreprocessError> {
    cfg.validate()?;
    check_dims(width, height, cfg.max_pixels, true)?;
    let expected = width as usize * height as usize * 4;
    if rgba.len() != expected {
        return Err(PreprocessError::Decode {
            format: "RGBA",
            message: format!("{} bytes for {width}x{height} pixels (expected {expected})", rgba.len()),
        });
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    let img = RgbImage::from_raw(width, height, rgb).expect("length checked above");
    Ok(resize_crop(Decoded::U8 { img: DynamicImage::ImageRgb8(img), nearest: false }, cfg))
}

fn resize_crop(decoded: Decoded, cfg: &PreprocessConfig) -> RgbImage {
    let (w, h) = decoded.dims();
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
    let filter = match cfg.interpolation {
        Interpolation::Bicubic => Filter::Bicubic,
        Interpolation::Bilinear => Filter::Bilinear,
    };
    decoded.resize_crop(nw, nh, crop, filter).to_rgb(Rect { x: 0, y: 0, w: s, h: s })
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

#[derive(Clone, Copy, Debug)]
struct Rect {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

/// The decoded pixels, in the PIL mode that decides how open_clip resizes and converts them.
enum Decoded {
    /// PIL "L" (`nearest` for "1") or "RGB" (`nearest` for "P"): 1 or 3 channels.
    U8 { img: DynamicImage, nearest: bool },
    /// PIL "LA"/"RGBA": resized premultiplied; alpha dropped by `convert("RGB")`.
    Alpha(DynamicImage),
    /// PIL "CMYK" (JPEG), held in an RGBA container: resized per channel, then PIL's naive CMYK->RGB.
    Cmyk(DynamicImage),
    /// PIL "I;16": resized in 16 bits; `convert("RGB")` clips to 255.
    Gray16(image::ImageBuffer<image::Luma<u16>, Vec<u16>>),
}

impl Decoded {
    fn dims(&self) -> (u32, u32) {
        match self {
            Decoded::U8 { img, .. } | Decoded::Alpha(img) | Decoded::Cmyk(img) => (img.width(), img.height()),
            Decoded::Gray16(g) => g.dimensions(),
        }
    }

    fn resize_crop(self, nw: u32, nh: u32, crop: Rect, filter: Filter) -> Decoded {
        let (w, h) = self.dims();
        if (w, h) == (nw, nh) {
            return self.crop(crop); // PIL: resize to the same size returns a copy
        }
        match self {
            Decoded::U8 { img, nearest } => {
                let ch = img.color().channel_count() as usize;
                let out = if nearest {
                    nearest_resize(img.as_bytes(), w, h, ch, nw, nh, crop)
                } else {
                    resample::<U8Kernel>(img.as_bytes(), w, h, ch, nw, nh, crop, filter)
                };
                Decoded::U8 { img: from_raw(out, crop, ch), nearest }
            }
            Decoded::Cmyk(img) => {
                Decoded::Cmyk(from_raw(resample::<U8Kernel>(img.as_bytes(), w, h, 4, nw, nh, crop, filter), crop, 4))
            }
            Decoded::Alpha(img) => {
                let ch = img.color().channel_count() as usize;
                let mut buf = img.into_bytes();
                premultiply(&mut buf, ch);
                let mut out = resample::<U8Kernel>(&buf, w, h, ch, nw, nh, crop, filter);
                unpremultiply(&mut out, ch);
                Decoded::Alpha(from_raw(out, crop, ch))
            }
            Decoded::Gray16(g) => {
                let out = resample::<U16Kernel>(g.as_raw(), w, h, 1, nw, nh, crop, filter);
                Decoded::Gray16(image::ImageBuffer::from_raw(crop.w, crop.h, out).expect("sized buffer"))
            }
        }
    }

    fn crop(self, r: Rect) -> Decoded {
        match self {
            Decoded::U8 { img, nearest } => Decoded::U8 { img: img.crop_imm(r.x, r.y, r.w, r.h), nearest },
            Decoded::Alpha(img) => Decoded::Alpha(img.crop_imm(r.x, r.y, r.w, r.h)),
            Decoded::Cmyk(img) => Decoded::Cmyk(img.crop_imm(r.x, r.y, r.w, r.h)),
            Decoded::Gray16(g) => Decoded::Gray16(image::imageops::crop_imm(&g, r.x, r.y, r.w, r.h).to_image()),
        }
    }

    /// PIL `convert("RGB")` of the region `r`.
    fn to_rgb(&self, r: Rect) -> RgbImage {
        let (w, _) = self.dims();
        let mut out = RgbImage::new(r.w, r.h);
        let (bytes, ch): (&[u8], usize) = match self {
            Decoded::U8 { img, .. } | Decoded::Alpha(img) => (img.as_bytes(), img.color().channel_count() as usize),
            Decoded::Cmyk(img) => {
                let b = img.as_bytes();
                for (x, y, p) in out.enumerate_pixels_mut() {
                    let i = ((r.y + y) as usize * w as usize + (r.x + x) as usize) * 4;
                    let nk = 255 - b[i + 3] as u32; // Pillow cmyk2rgb
                    *p = image::Rgb(std::array::from_fn(|c| (nk - muldiv255(b[i + c] as u32, nk) as u32) as u8));
                }
                return out;
            }
            Decoded::Gray16(g) => {
                for (x, y, p) in out.enumerate_pixels_mut() {
                    let v = g.get_pixel(r.x + x, r.y + y).0[0].min(255) as u8;
                    *p = image::Rgb([v, v, v]);
                }
                return out;
            }
        };
        for (x, y, p) in out.enumerate_pixels_mut() {
            let i = ((r.y + y) as usize * w as usize + (r.x + x) as usize) * ch;
            *p = if ch <= 2 { image::Rgb([bytes[i]; 3]) } else { image::Rgb([bytes[i], bytes[i + 1], bytes[i + 2]]) };
        }
        out
    }
}

fn from_raw(buf: Vec<u8>, r: Rect, ch: usize) -> DynamicImage {
    let img = match ch {
        1 => image::GrayImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageLuma8),
        2 => image::GrayAlphaImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageLumaA8),
        3 => RgbImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageRgb8),
        _ => image::RgbaImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageRgba8),
    };
    img.expect("buffer sized from the crop")
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

/// Decodes to the PIL mode. With `check_shape`, also refuses tiny and extremely elongated images.
fn check_dims(width: u32, height: u32, max_pixels: u64, check_shape: bool) -> Result<(), PreprocessError> {
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(PreprocessError::TooManyPixels { width, height, pixels, max_pixels });
    }
    if width == 0 || height == 0 || (check_shape && width.min(height) < MIN_SIDE) {
        return Err(PreprocessError::TooSmall { width, height });
    }
    if check_shape && width.max(height) as u64 > MAX_ASPECT as u64 * width.min(height) as u64 {
        return Err(PreprocessError::ExtremeAspect { width, height });
    }
    Ok(())
}

fn decode(bytes: &[u8], max_pixels: u64, check_shape: bool) -> Result<(Decoded, ImageFormat), PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| PreprocessError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif | ImageFormat::Bmp)
    {
        return Err(PreprocessError::UnsupportedFormat(format!("{format:?}")));
    }
    let name = format_name(format);
    let decode_err = |e: ImageError| match e {
        ImageError::Limits(l) => {
            PreprocessError::Decode { format: name, message: format!("exceeds decoder limits: {l}") }
        }
        ImageError::Unsupported(u) => PreprocessError::UnsupportedFormat(format!("{name} variant: {u}")),
        other => PreprocessError::Decode { format: name, message: other.to_string() },
    };

    // Header-level facts that the image crate normalises away, but that decide PIL's mode.
    let hint = match format {
        ImageFormat::Png => png_mode(bytes),
        ImageFormat::Gif => gif_mode(bytes),
        ImageFormat::Bmp => bmp_mode(bytes),
        _ => ModeHint::default(),
    };

    let max_alloc = max_pixels.saturating_mul(10).max(64 << 20);
    let check_dims = |width: u32, height: u32| check_dims(width, height, max_pixels, check_shape);

    let (mut img, cmyk, orientation) = if format == ImageFormat::Jpeg {
        // Pixels from the libjpeg-turbo-exact decoder; the image crate covers what it refuses.
        let header = jpeg::probe(bytes).map_err(|m| PreprocessError::Decode { format: name, message: m })?;
        check_dims(header.width, header.height)?;
        let orientation = header.exif.and_then(Orientation::from_exif_chunk).unwrap_or(Orientation::NoTransforms);
        match jpeg::decode(bytes, max_alloc) {
            Ok(j) => {
                let (w, h) = (j.width, j.height);
                let img = match j.model {
                    jpeg::Model::Gray => image::GrayImage::from_raw(w, h, j.data).map(DynamicImage::ImageLuma8),
                    jpeg::Model::Rgb => RgbImage::from_raw(w, h, j.data).map(DynamicImage::ImageRgb8),
                    // CMYK samples in an RGBA container, so that orientation and cropping apply.
                    jpeg::Model::Cmyk => image::RgbaImage::from_raw(w, h, j.data).map(DynamicImage::ImageRgba8),
                };
                (img.expect("decoder output matches its dimensions"), j.model == jpeg::Model::Cmyk, orientation)
            }
            Err(ours) => {
                let fallback = image_decoder(bytes, format, max_alloc).and_then(DynamicImage::from_decoder);
                let img = fallback.map_err(|e| PreprocessError::Decode {
                    format: name,
                    message: format!("{ours}; the fallback decoder says: {e}"),
                })?;
                (img, false, orientation)
            }
        }
    } else {
        let mut decoder = image_decoder(bytes, format, max_alloc).map_err(decode_err)?;
        let (width, height) = decoder.dimensions();
        check_dims(width, height)?;
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        (DynamicImage::from_decoder(decoder).map_err(decode_err)?, false, orientation)
    };
    img.apply_orientation(orientation);
    if cmyk {
        return Ok((Decoded::Cmyk(img), format));
    }

    let decoded = match img {
        DynamicImage::ImageLuma16(g) => Decoded::Gray16(g),
        DynamicImage::ImageLumaA16(g) if hint.drop_alpha => {
            // Grey + tRNS: PIL keeps mode I;16 and ignores the transparency.
            let (w, h) = g.dimensions();
            Decoded::Gray16(image::ImageBuffer::from_fn(w, h, |x, y| image::Luma([g.get_pixel(x, y).0[0]])))
        }
        other => {
            // 16-bit colour PNGs: Pillow keeps the high byte of each sample.
            let other = match high_bytes(other) {
                o @ (DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageRgb8(_)
                | DynamicImage::ImageRgba8(_)) => o,
                o if o.color().has_alpha() => DynamicImage::ImageRgba8(o.to_rgba8()),
                o => DynamicImage::ImageRgb8(o.to_rgb8()),
            };
            if other.color().has_alpha() && !hint.drop_alpha {
                Decoded::Alpha(other)
            } else {
                // Alpha from tRNS or GIF transparency is not a channel of PIL's P/L/RGB modes.
                let other = if other.color().has_alpha() {
                    let mut rgb = other.to_rgb8();
                    if let Some(fill) = hint.outside_fill {
                        fill_outside(&mut rgb, &other, fill);
                    }
                    DynamicImage::ImageRgb8(rgb)
                } else {
                    other
                };
                let img = if hint.grey { DynamicImage::ImageLuma8(other.to_luma8_first()) } else { other };
                Decoded::U8 { img, nearest: hint.palette && !hint.grey }
            }
        }
    };
    Ok((decoded, format))
}

fn image_decoder(bytes: &[u8], format: ImageFormat, max_alloc: u64) -> Result<impl ImageDecoder + '_, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    reader.into_decoder()
}

/// Facts from the file header that decide the PIL mode.
#[derive(Default)]
struct ModeHint {
    /// PIL mode P or 1: NEAREST resampling.
    palette: bool,
    /// Palette whose colours are the identity grey ramp: PIL decodes it as mode L (bicubic).
    grey: bool,
    /// The decoder's alpha comes from tRNS / GIF transparency, which PIL's RGB mode ignores.
    drop_alpha: bool,
    /// GIF: pixels outside the first frame get this palette colour in PIL.
    outside_fill: Option<[u8; 3]>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// PNG IHDR: colour type 3 is palette (P), 1-bit grey is mode 1; tRNS never adds a channel in PIL
/// except for palette images, whose RGB conversion ignores it anyway.
fn png_mode(b: &[u8]) -> ModeHint {
    let (depth, color_type) = (b.get(24).copied().unwrap_or(8), b.get(25).copied().unwrap_or(2));
    let mut hint = ModeHint { palette: color_type == 3 || (color_type == 0 && depth == 1), ..Default::default() };
    // Grey (0) and RGB (2) have no alpha in PIL even when the decoder adds one for tRNS.
    hint.drop_alpha = matches!(color_type, 0 | 2 | 3);
    hint
}

/// GIF: PIL opens the first frame as P, or as L when the active colour table is the identity grey ramp
/// (`GifImageFile._is_palette_needed`). Outside the first frame, PIL's canvas holds the transparent
/// index (or 0).
fn gif_mode(b: &[u8]) -> ModeHint {
    let mut hint = ModeHint { palette: true, drop_alpha: true, ..Default::default() };
    let parse = || -> Option<(bool, Option<[u8; 3]>)> {
        let (sw, sh) = (le16(b, 6)?, le16(b, 8)?);
        let flags = *b.get(10)?;
        let mut pos = 13;
        let mut global: Option<&[u8]> = None;
        if flags & 0x80 != 0 {
            let n = 3usize << ((flags & 7) + 1);
            global = Some(b.get(pos..pos + n)?);
            pos += n;
        }
        let mut transparent = None;
        loop {
            match *b.get(pos)? {
                0x21 => {
                    let label = *b.get(pos + 1)?;
                    pos += 2;
                    if label == 0xF9 && *b.get(pos)? >= 4 && b.get(pos + 1)? & 1 != 0 {
                        transparent = Some(*b.get(pos + 4)?);
                    }
                    loop {
                        let len = *b.get(pos)? as usize;
                        pos += 1 + len;
                        if len == 0 {
                            break;
                        }
                    }
                }
                0x2C => {
                    let (fx, fy, fw, fh) = (le16(b, pos + 1)?, le16(b, pos + 3)?, le16(b, pos + 5)?, le16(b, pos + 7)?);
                    let lflags = *b.get(pos + 9)?;
                    let table = if lflags & 0x80 != 0 {
                        let n = 3usize << ((lflags & 7) + 1);
                        Some(b.get(pos + 10..pos + 10 + n)?)
                    } else {
                        global
                    };
                    let grey =
                        table.is_none_or(|t| t.chunks(3).enumerate().all(|(i, c)| c.iter().all(|&v| v as usize == i)));
                    let covers = fx == 0 && fy == 0 && fw >= sw && fh >= sh;
                    let fill = if covers {
                        None
                    } else {
                        let idx = transparent.unwrap_or(0) as usize * 3;
                        Some(table.and_then(|t| t.get(idx..idx + 3)).map_or([0; 3], |c| [c[0], c[1], c[2]]))
                    };
                    return Some((grey, fill));
                }
                _ => return None,
            }
        }
    };
    if let Some((grey, fill)) = parse() {
        hint.grey = grey;
        hint.outside_fill = fill;
    }
    hint
}

/// BMP with <= 8 bits per pixel: PIL mode P, or 1 / L when the palette is black-white / the grey ramp.
fn bmp_mode(b: &[u8]) -> ModeHint {
    let parse = || -> Option<ModeHint> {
        let header = le32(b, 14)? as usize;
        let (bits, colors, pad) = if header == 12 {
            let bits = le16(b, 24)?;
            (bits, 0, 3)
        } else {
            (le16(b, 28)?, le32(b, 46)?, 4)
        };
        if bits > 8 {
            return Some(ModeHint::default());
        }
        let colors = if colors == 0 { 1usize << bits } else { colors as usize };
        let pal = b.get(14 + header..14 + header + pad * colors)?;
        let grey = (0..colors).all(|i| {
            let v = if colors == 2 { [0u8, 255][i] } else { i as u8 };
            i < 256 && pal[i * pad..i * pad + 3].iter().all(|&c| c == v)
        });
        // Mode "1" (two grey entries) resizes with NEAREST like P; mode L resizes bicubic.
        Some(ModeHint { palette: true, grey: grey && colors > 2, ..Default::default() })
    };
    parse().unwrap_or_default()
}

/// 16-bit to 8-bit by keeping the high byte, as Pillow's `;16B` raw modes do.
fn high_bytes(img: DynamicImage) -> DynamicImage {
    fn hi<P: image::Pixel<Subpixel = u16>, Q: image::Pixel<Subpixel = u8>>(
        b: &image::ImageBuffer<P, Vec<u16>>,
    ) -> image::ImageBuffer<Q, Vec<u8>> {
        image::ImageBuffer::from_raw(b.width(), b.height(), b.as_raw().iter().map(|v| (v >> 8) as u8).collect())
            .expect("same layout")
    }
    match img {
        DynamicImage::ImageRgb16(b) => DynamicImage::ImageRgb8(hi(&b)),
        DynamicImage::ImageRgba16(b) => DynamicImage::ImageRgba8(hi(&b)),
        DynamicImage::ImageLumaA16(b) => DynamicImage::ImageLumaA8(hi(&b)),
        DynamicImage::ImageLuma16(b) => DynamicImage::ImageLuma8(hi(&b)),
        o => o,
    }
}

/// Grey-ramp palettes: PIL's L value is the palette index, i.e. any one of the equal RGB channels.
trait FirstChannel {
    fn to_luma8_first(&self) -> image::GrayImage;
}

impl FirstChannel for DynamicImage {
    fn to_luma8_first(&self) -> image::GrayImage {
        let rgb = self.to_rgb8();
        image::GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| image::Luma([rgb.get_pixel(x, y).0[0]]))
    }
}

/// GIF canvas outside the first frame: image gives transparent black, PIL the fill index's colour.
fn fill_outside(rgb: &mut RgbImage, src: &DynamicImage, fill: [u8; 3]) {
    if let DynamicImage::ImageRgba8(rgba) = src {
        for (p, s) in rgb.pixels_mut().zip(rgba.pixels()) {
            if s.0 == [0, 0, 0, 0] {
                *p = image::Rgb(fill);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling: a port of Pillow's Resample.c (convolution) and ImagingScaleAffine (NEAREST).

#[derive(Clone, Copy)]
enum Filter {
    Bicubic,
    Bilinear,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bicubic => 2.0,
            Filter::Bilinear => 1.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
        }
    }
}

/// Per output position: first input index and the normalised weights (`precompute_coeffs`).
struct Coeffs {
    start: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

fn precompute_coeffs(in_size: u32, out_size: u32, filter: Filter) -> Coeffs {
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let inv = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size as usize);
    let mut weights = Vec::with_capacity(out_size as usize);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let mut k: Vec<f64> = (xmin..xmax).map(|x| filter.eval((x as f64 - center + 0.5) * inv)).collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            k.iter_mut().for_each(|v| *v /= ww);
        }
        start.push(xmin as usize);
        weights.push(k);
    }
    Coeffs { start, weights }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// How one pass combines input samples with an output position's weights.
trait Kernel {
    type T: Copy + Default;
    type W;
    fn weights(c: &Coeffs) -> Vec<Vec<Self::W>>;
    /// Weighted sum of `k.len()` samples starting at `src[at]`, `stride` apart.
    fn dot(src: &[Self::T], at: usize, stride: usize, k: &[Self::W]) -> Self::T;
}

/// Pillow's 8-bit passes: fixed-point weights with 22 fraction bits, rounded and clipped per pass.
struct U8Kernel;

impl Kernel for U8Kernel {
    type T = u8;
    type W = i32;
    fn weights(c: &Coeffs) -> Vec<Vec<i32>> {
        let one = (1u32 << PRECISION_BITS) as f64;
        let fix = |v: f64| if v < 0.0 { (-0.5 + v * one) as i32 } else { (0.5 + v * one) as i32 };
        c.weights.iter().map(|k| k.iter().map(|&v| fix(v)).collect()).collect()
    }
    #[inline]
    fn dot(src: &[u8], at: usize, stride: usize, k: &[i32]) -> u8 {
        let mut ss: i32 = 1 << (PRECISION_BITS - 1);
        for (i, &kv) in k.iter().enumerate() {
            ss += src[at + i * stride] as i32 * kv;
        }
        (ss >> PRECISION_BITS).clamp(0, 255) as u8
    }
}

/// Pillow's I;16 passes: double accumulation, round half away from zero, clip to u16.
struct U16Kernel;

impl Kernel for U16Kernel {
    type T = u16;
    type W = f64;
    fn weights(c: &Coeffs) -> Vec<Vec<f64>> {
        c.weights.clone()
    }
    #[inline]
    fn dot(src: &[u16], at: usize, stride: usize, k: &[f64]) -> u16 {
        let mut ss = 0.0f64;
        for (i, &kv) in k.iter().enumerate() {
            ss += src[at + i * stride] as f64 * kv;
        }
        let r = if ss >= 0.0 { (ss + 0.5) as i64 } else { (ss - 0.5) as i64 };
        r.clamp(0, 65535) as u16
    }
}

/// One pass's coefficients in kernel form.
struct Pass<K: Kernel> {
    start: Vec<usize>,
    k: Vec<Vec<K::W>>,
}

impl<K: Kernel> Pass<K> {
    fn new(in_size: u32, out_size: u32, filter: Filter) -> Self {
        let c = precompute_coeffs(in_size, out_size, filter);
        Pass { k: K::weights(&c), start: c.start }
    }

    /// Input range read by the outputs `out`.
    fn span(&self, out: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let lo = out.clone().map(|o| self.start[o]).min().unwrap_or(0);
        let hi = out.map(|o| self.start[o] + self.k[o].len()).max().unwrap_or(0);
        lo..hi
    }
}

/// Layout of an intermediate block: `w` pixels wide, its column 0 / row 0 being input column `x0` / row `y0`.
#[derive(Clone, Copy)]
struct Layout {
    w: usize,
    x0: usize,
    y0: usize,
}

/// Pillow's separable two-pass convolution resize (`ImagingResampleInner`, Pillow 13), computing only
/// the `crop` region of the `nw`×`nh` result. Each output sample is computed exactly as Pillow does,
/// including the pass order: Pillow 13 runs the vertical pass first when the height shrinks by more
/// than twice as many pixels as the width (earlier Pillow versions always went horizontal first).
#[allow(clippy::too_many_arguments)]
fn resample<K: Kernel>(
    src: &[K::T],
    w: u32,
    h: u32,
    ch: usize,
    nw: u32,
    nh: u32,
    crop: Rect,
    filter: Filter,
) -> Vec<K::T> {
    let (need_h, need_v) = (nw != w, nh != h);
    let (dw, dh) = (w as i64 - nw as i64, h as i64 - nh as i64);
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let cols = crop.x as usize..(crop.x + crop.w) as usize;
    let rows = crop.y as usize..(crop.y + crop.h) as usize;
    let hp = need_h.then(|| Pass::<K>::new(w, nw, filter));
    let vp = need_v.then(|| Pass::<K>::new(h, nh, filter));
    let input = Layout { w: w as usize, x0: 0, y0: 0 };

    // Horizontal pass over `in_rows` (absolute input rows) of `b`, producing output columns `cols`.
    let hpass = |b: Layout, data: &[K::T], in_rows: std::ops::Range<usize>, p: &Pass<K>| -> (Vec<K::T>, Layout) {
        let mut out = Vec::with_capacity(in_rows.len() * cols.len() * ch);
        for y in in_rows.clone() {
            let row = (y - b.y0) * b.w;
            for xx in cols.clone() {
                for c in 0..ch {
                    out.push(K::dot(data, (row + p.start[xx] - b.x0) * ch + c, ch, &p.k[xx]));
                }
            }
        }
        (out, Layout { w: cols.len(), x0: cols.start, y0: in_rows.start })
    };
    // Vertical pass over `in_cols` (absolute input columns) of `b`, producing output rows `rows`.
    let vpass = |b: Layout, data: &[K::T], in_cols: std::ops::Range<usize>, p: &Pass<K>| -> (Vec<K::T>, Layout) {
        let mut out = Vec::with_capacity(rows.len() * in_cols.len() * ch);
        for yy in rows.clone() {
            let base = (p.start[yy] - b.y0) * b.w;
            for x in in_cols.clone() {
                for c in 0..ch {
                    out.push(K::dot(data, (base + x - b.x0) * ch + c, b.w * ch, &p.k[yy]));
                }
            }
        }
        (out, Layout { w: in_cols.len(), x0: in_cols.start, y0: rows.start })
    };
    // Copy of `cols`×`rows` (absolute) out of `b`.
    let window = |b: Layout, data: &[K::T], cs: std::ops::Range<usize>, rs: std::ops::Range<usize>| -> Vec<K::T> {
        let mut out = Vec::with_capacity(cs.len() * rs.len() * ch);
        for y in rs {
            let at = ((y - b.y0) * b.w + cs.start - b.x0) * ch;
            out.extend_from_slice(&data[at..at + cs.len() * ch]);
        }
        out
    };

    match (&hp, &vp) {
        (None, None) => window(input, src, cols.clone(), rows.clone()),
        (Some(hp), None) => hpass(input, src, rows.clone(), hp).0,
        (None, Some(vp)) => vpass(input, src, cols.clone(), vp).0,
        (Some(hp), Some(vp)) if horizontal_first => {
            let (t, l) = hpass(input, src, vp.span(rows.clone()), hp);
            vpass(l, &t, cols.clone(), vp).0
        }
        (Some(hp), Some(vp)) => {
            let (t, l) = vpass(input, src, hp.span(cols.clone()), vp);
            hpass(l, &t, rows.clone(), hp).0
        }
    }
}

/// Pillow's NEAREST resize (`ImagingScaleAffine`): source index = int(accumulated (i + 0.5) * scale).
#[allow(clippy::too_many_arguments)]
fn nearest_resize(src: &[u8], w: u32, h: u32, ch: usize, nw: u32, nh: u32, crop: Rect) -> Vec<u8> {
    let table = |in_size: u32, out_size: u32| -> Vec<Option<usize>> {
        let a = (in_size as f32) as f64 / out_size as f64;
        let mut o = a * 0.5;
        (0..out_size)
            .map(|_| {
                let i = if o < 0.0 { -1 } else { o as i64 };
                o += a;
                (i >= 0 && i < in_size as i64).then_some(i as usize)
            })
            .collect()
    };
    let (xt, yt) = (table(w, nw), table(h, nh));
    let mut out = vec![0u8; (crop.w * crop.h) as usize * ch];
    for oy in 0..crop.h as usize {
        let Some(sy) = yt[crop.y as usize + oy] else { continue };
        for ox in 0..crop.w as usize {
            let Some(sx) = xt[crop.x as usize + ox] else { continue };
            let s = (sy * w as usize + sx) * ch;
            let d = (oy * crop.w as usize + ox) * ch;
            out[d..d + ch].copy_from_slice(&src[s..s + ch]);
        }
    }
    out
}

#[inline]
fn muldiv255(a: u32, b: u32) -> u8 {
    let t = a * b + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// RGBA -> RGBa / LA -> La (Pillow `rgbA2rgba`, `lA2la`).
fn premultiply(buf: &mut [u8], ch: usize) {
    for px in buf.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        for v in &mut px[..ch - 1] {
            *v = muldiv255(*v as u32, a);
        }
    }
}

/// RGBa -> RGBA / La -> LA (Pillow `rgba2rgbA`, `la2lA`): truncating division, alpha 0 and 255 untouched.
fn unpremultiply(buf: &mut [u8], ch: usize) {
    for px in buf.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        if a != 0 && a != 255 {
            for v in &mut px[..ch - 1] {
                *v = ((255 * *v as u32) / a).min(255) as u8;
            }
        }
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
