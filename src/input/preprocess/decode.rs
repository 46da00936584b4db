//! Decoding to the PIL mode that decides how open_clip resizes and converts an image: which
//! decoder runs (our libjpeg-exact `jpeg` for JPEG, the image crate otherwise), the header probes
//! that recover PIL's mode (palette, 1-bit, 16-bit grey, alpha), EXIF orientation, and the size
//! checks.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use super::jpeg;
use super::resample::{
    muldiv255, nearest_resize, premultiply, resample, unpremultiply, Filter, Rect, U16Kernel, U8Kernel,
};
use crate::error::PreprocessError;
use crate::limits::{MAX_ASPECT, MAX_BMP_COLORS, MIN_SIDE};

/// The decoded pixels, in the PIL mode that decides how open_clip resizes and converts them.
pub(super) enum Decoded {
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
    pub(super) fn dims(&self) -> (u32, u32) {
        match self {
            Decoded::U8 { img, .. } | Decoded::Alpha(img) | Decoded::Cmyk(img) => (img.width(), img.height()),
            Decoded::Gray16(g) => g.dimensions(),
        }
    }

    pub(super) fn resize_crop(self, nw: u32, nh: u32, crop: Rect, filter: Filter) -> Decoded {
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

    pub(super) fn crop(self, r: Rect) -> Decoded {
        match self {
            Decoded::U8 { img, nearest } => Decoded::U8 { img: img.crop_imm(r.x, r.y, r.w, r.h), nearest },
            Decoded::Alpha(img) => Decoded::Alpha(img.crop_imm(r.x, r.y, r.w, r.h)),
            Decoded::Cmyk(img) => Decoded::Cmyk(img.crop_imm(r.x, r.y, r.w, r.h)),
            Decoded::Gray16(g) => Decoded::Gray16(image::imageops::crop_imm(&g, r.x, r.y, r.w, r.h).to_image()),
        }
    }

    /// PIL `convert("RGB")` of the region `r`.
    pub(super) fn to_rgb(&self, r: Rect) -> RgbImage {
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

pub(super) fn from_raw(buf: Vec<u8>, r: Rect, ch: usize) -> DynamicImage {
    let img = match ch {
        1 => image::GrayImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageLuma8),
        2 => image::GrayAlphaImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageLumaA8),
        3 => RgbImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageRgb8),
        _ => image::RgbaImage::from_raw(r.w, r.h, buf).map(DynamicImage::ImageRgba8),
    };
    img.expect("buffer sized from the crop")
}

pub(super) fn format_name(f: ImageFormat) -> &'static str {
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
pub(super) fn check_dims(width: u32, height: u32, max_pixels: u64, check_shape: bool) -> Result<(), PreprocessError> {
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

pub(super) fn decode(
    bytes: &[u8],
    max_pixels: u64,
    check_shape: bool,
) -> Result<(Decoded, ImageFormat), PreprocessError> {
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

    // Clamped so that every size below max_alloc fits a usize, on wasm32 too.
    let max_alloc = max_pixels.saturating_mul(10).max(64 << 20).min(isize::MAX as u64);
    // The longest side any decoder may report: a belt-and-braces bound in the image crate's own
    // Limits (its decoders check it before allocating); check_dims below is the real check.
    let min_short = if check_shape { MIN_SIDE as u64 } else { 1 };
    let max_side = (max_pixels / min_short).clamp(1, u32::MAX as u64) as u32;
    let limits = DecodeLimits { max_alloc, max_side };
    let check_dims = |width: u32, height: u32| check_dims(width, height, max_pixels, check_shape);

    let (mut img, cmyk, orientation) = if format == ImageFormat::Jpeg {
        // Pixels from the libjpeg-turbo-exact decoder; the image crate covers what it declines.
        // The probe reads markers as libjpeg does and refuses a second frame header, so its size is
        // the frame's; whichever decoder runs, its output size must be that size.
        let header = jpeg::probe(bytes).map_err(|m| PreprocessError::Decode { format: name, message: m })?;
        check_dims(header.width, header.height)?;
        let expected = (header.width, header.height);
        let mismatch = |w: u32, h: u32| PreprocessError::Decode {
            format: name,
            message: format!("the decoder reads a {w}x{h} frame, the header says {}x{}", expected.0, expected.1),
        };
        let orientation = header.orientation.and_then(Orientation::from_exif).unwrap_or(Orientation::NoTransforms);
        match jpeg::decode(bytes, max_alloc) {
            Ok(j) => {
                let (w, h) = (j.width, j.height);
                if (w, h) != expected {
                    return Err(mismatch(w, h));
                }
                let img = match j.model {
                    jpeg::Model::Gray => image::GrayImage::from_raw(w, h, j.data).map(DynamicImage::ImageLuma8),
                    jpeg::Model::Rgb => RgbImage::from_raw(w, h, j.data).map(DynamicImage::ImageRgb8),
                    // CMYK samples in an RGBA container, so that orientation and cropping apply.
                    jpeg::Model::Cmyk => image::RgbaImage::from_raw(w, h, j.data).map(DynamicImage::ImageRgba8),
                };
                let img = img.ok_or_else(|| PreprocessError::Decode {
                    format: name,
                    message: "decoder output does not match its dimensions".into(),
                })?;
                (img, j.model == jpeg::Model::Cmyk, orientation)
            }
            Err(jpeg::DecodeError::Limit(m)) => {
                return Err(PreprocessError::Decode { format: name, message: format!("refused: {m}") })
            }
            Err(jpeg::DecodeError::Declined(ours)) => {
                let img = fallback_jpeg(bytes, &ours, expected, limits, max_pixels, check_shape)?;
                (img, false, orientation)
            }
        }
    } else if let Some(layout) = if format == ImageFormat::Bmp { bmp_pil_layout(bytes) } else { None } {
        // 16-bit and RLE BMPs: decoded here, as Pillow decodes them (see `bmp_pil_layout`).
        let layout = layout.map_err(|m| PreprocessError::UnsupportedFormat(format!("{name} variant: {m}")))?;
        check_dims(layout.width, layout.height)?;
        let img = bmp_pil_decode(bytes, &layout).map_err(|m| PreprocessError::Decode { format: name, message: m })?;
        (img, false, Orientation::NoTransforms)
    } else {
        let mut decoder = image_decoder(bytes, format, limits).map_err(decode_err)?;
        let (width, height) = decoder.dimensions();
        check_dims(width, height)?;
        let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
        let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
        // Whatever a decoder returns goes through the same check (a GIF frame, say, is not its screen).
        check_dims(img.width(), img.height())?;
        (img, false, orientation)
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

/// The image crate's decoder for a JPEG that `jpeg::decode` declined: the same size checks as every
/// other decoder, on the size it reports before it allocates, and that size must be the one the
/// probe checked (`expected`).
pub(super) fn fallback_jpeg(
    bytes: &[u8],
    ours: &str,
    expected: (u32, u32),
    limits: DecodeLimits,
    max_pixels: u64,
    check_shape: bool,
) -> Result<DynamicImage, PreprocessError> {
    let fallback_err = |e: ImageError| PreprocessError::Decode {
        format: "JPEG",
        message: format!("{ours}; the fallback decoder says: {e}"),
    };
    let decoder = image_decoder(bytes, ImageFormat::Jpeg, limits).map_err(fallback_err)?;
    let (w, h) = decoder.dimensions();
    check_dims(w, h, max_pixels, check_shape)?;
    if (w, h) != expected {
        return Err(PreprocessError::Decode {
            format: "JPEG",
            message: format!(
                "the fallback decoder reads a {w}x{h} frame, the header says {}x{}",
                expected.0, expected.1
            ),
        });
    }
    DynamicImage::from_decoder(decoder).map_err(fallback_err)
}

/// The image crate's own limits, set on every decoder it runs.
#[derive(Clone, Copy)]
pub(super) struct DecodeLimits {
    pub(super) max_alloc: u64,
    pub(super) max_side: u32,
}

pub(super) fn image_decoder(
    bytes: &[u8],
    format: ImageFormat,
    l: DecodeLimits,
) -> Result<impl ImageDecoder + '_, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(l.max_alloc);
    limits.max_image_width = Some(l.max_side);
    limits.max_image_height = Some(l.max_side);
    reader.limits(limits);
    reader.into_decoder()
}

/// Facts from the file header that decide the PIL mode.
#[derive(Default)]
pub(super) struct ModeHint {
    /// PIL mode P or 1: NEAREST resampling.
    palette: bool,
    /// Palette whose colours are the identity grey ramp: PIL decodes it as mode L (bicubic).
    grey: bool,
    /// The decoder's alpha comes from tRNS / GIF transparency, which PIL's RGB mode ignores.
    drop_alpha: bool,
    /// GIF: pixels outside the first frame get this palette colour in PIL.
    outside_fill: Option<[u8; 3]>,
}

pub(super) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// PNG IHDR: colour type 3 is palette (P), 1-bit grey is mode 1; tRNS never adds a channel in PIL
/// except for palette images, whose RGB conversion ignores it anyway.
pub(super) fn png_mode(b: &[u8]) -> ModeHint {
    let (depth, color_type) = (b.get(24).copied().unwrap_or(8), b.get(25).copied().unwrap_or(2));
    let mut hint = ModeHint { palette: color_type == 3 || (color_type == 0 && depth == 1), ..Default::default() };
    // Grey (0) and RGB (2) have no alpha in PIL even when the decoder adds one for tRNS.
    hint.drop_alpha = matches!(color_type, 0 | 2 | 3);
    hint
}

/// GIF: PIL opens the first frame as P, or as L when the active colour table is the identity grey ramp
/// (`GifImageFile._is_palette_needed`). Outside the first frame, PIL's canvas holds the transparent
/// index (or 0).
pub(super) fn gif_mode(b: &[u8]) -> ModeHint {
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
pub(super) fn bmp_mode(b: &[u8]) -> ModeHint {
    // Every size here comes from the header: checked arithmetic (wasm32 has a 32-bit usize), the
    // colour count capped before it sizes anything, and no slice that can fail.
    let parse = || -> Option<ModeHint> {
        let header = usize::try_from(le32(b, 14)?).ok()?;
        let (bits, colors, pad) = if header == 12 {
            let bits = le16(b, 24)?;
            (bits, 0, 3usize)
        } else {
            (le16(b, 28)?, le32(b, 46)?, 4usize)
        };
        if bits > 8 {
            return Some(ModeHint::default());
        }
        let colors = if colors == 0 { 1usize << bits } else { usize::try_from(colors).ok()? };
        if colors > MAX_BMP_COLORS {
            // PIL still opens it as P; the image crate refuses it or reads the first 256.
            return Some(ModeHint { palette: true, ..Default::default() });
        }
        let start = header.checked_add(14)?;
        let pal = b.get(start..start.checked_add(pad * colors)?)?;
        let grey = pal.chunks_exact(pad).enumerate().all(|(i, entry)| {
            let v = if colors == 2 {
                if i == 0 {
                    0u8
                } else {
                    255
                }
            } else {
                i as u8
            };
            entry.iter().take(3).all(|&c| c == v)
        });
        // Mode "1" (two grey entries) resizes with NEAREST like P; mode L resizes bicubic.
        Some(ModeHint { palette: true, grey: grey && colors > 2, ..Default::default() })
    };
    parse().unwrap_or_default()
}

/// A BMP whose pixels we decode ourselves, because the image crate's differ from Pillow's.
pub(super) struct BmpLayout {
    width: u32,
    height: u32,
    /// Rows stored top row first (negative height); BMPs are bottom-up otherwise.
    top_down: bool,
    /// Where the pixel data starts (Pillow's tile offset).
    data_offset: usize,
    kind: BmpKind,
}

pub(super) enum BmpKind {
    /// 16 bits per pixel, 5-5-5 (`BGR;15`) or 5-6-5 (`BGR;16`, `green6`). Pillow's `Unpack.c`
    /// expands a channel as `v * 255 / max` truncated (5 bits: 3 -> 24); the image crate rounds (25).
    Rgb16 { green6: bool },
    /// RLE8 / RLE4 (Pillow's `BmpRleDecoder`): pixels skipped by an end of line or a delta get palette
    /// index 0 (the image crate paints them black). `grey`: PIL mode L, whose value is the index.
    Rle { rle4: bool, palette: Vec<[u8; 3]>, grey: bool },
}

/// The BMP layouts decoded by `bmp_pil_decode`: `None` for every other BMP (the image crate's),
/// `Some(Err)` for a 16-bit bitfields layout that Pillow refuses. Header reading follows Pillow's
/// `BmpImagePlugin._bitmap`; sizes come from the header, so every step is checked.
pub(super) fn bmp_pil_layout(b: &[u8]) -> Option<Result<BmpLayout, String>> {
    let header = le32(b, 14)?;
    let mut data_offset = usize::try_from(le32(b, 10)?).ok()?;
    let (width, height, top_down, bits, compression, colors, pad) = match header {
        12 => (le16(b, 18)? as u32, le16(b, 20)? as u32, false, le16(b, 24)?, 0, 0, 3usize),
        40 | 52 | 56 | 64 | 108 | 124 => {
            let flip = *b.get(25)? == 0xFF;
            let h = le32(b, 22)?;
            let h = if flip { 0u32.wrapping_sub(h) } else { h };
            (le32(b, 18)?, h, flip, le16(b, 28)?, le32(b, 30)?, le32(b, 46)?, 4usize)
        }
        _ => return None,
    };
    let kind = match (bits, compression) {
        (16, 0) => BmpKind::Rgb16 { green6: false },
        (16, 3) => match (le32(b, 54)?, le32(b, 58)?, le32(b, 62)?) {
            (0xF800, 0x07E0, 0x1F) => BmpKind::Rgb16 { green6: true },
            (0x7C00, 0x03E0, 0x1F) => BmpKind::Rgb16 { green6: false },
            (r, g, bl) => {
                return Some(Err(format!("16-bit bitfields {r:#x}/{g:#x}/{bl:#x} (Pillow reads only 5-6-5 and 5-5-5)")))
            }
        },
        (8, 1) | (4, 2) => {
            let colors = if colors == 0 { 1usize << bits } else { usize::try_from(colors).ok()? };
            if colors > MAX_BMP_COLORS {
                return None;
            }
            let start = usize::try_from(header).ok()?.checked_add(14)?;
            if data_offset == start && bits <= 8 {
                data_offset = data_offset.checked_add(pad * colors)?; // as Pillow does
            }
            let entries = b.get(start..start.checked_add(pad * colors)?)?;
            let palette = entries.chunks_exact(pad).map(|c| [c[2], c[1], c[0]]).collect();
            BmpKind::Rle { rle4: bits == 4, palette, grey: bmp_mode(b).grey }
        }
        _ => return None,
    };
    Some(Ok(BmpLayout { width, height, top_down, data_offset, kind }))
}

/// The pixels of a `bmp_pil_layout` BMP, as Pillow decodes them. Call after the size checks.
pub(super) fn bmp_pil_decode(b: &[u8], l: &BmpLayout) -> Result<DynamicImage, String> {
    let (w, h) = (usize::try_from(l.width).map_err(|_| "image too large")?, l.height as usize);
    let n = w.checked_mul(h).filter(|&n| n > 0).ok_or("image too large or empty")?;
    let truncated = || "image file is truncated".to_string();
    // File row `r` -> image row.
    let row = |r: usize| if l.top_down { r } else { h - 1 - r };
    match &l.kind {
        BmpKind::Rgb16 { green6 } => {
            let stride = w.checked_mul(2).and_then(|v| v.checked_add(3)).ok_or("image too large")? & !3;
            // Pillow's raw decoder skips the padding before each row but the first: the last row's
            // padding may be missing.
            let end = stride
                .checked_mul(h - 1)
                .and_then(|v| v.checked_add(2 * w))
                .and_then(|v| v.checked_add(l.data_offset))
                .ok_or_else(truncated)?;
            let data = b.get(l.data_offset..end).ok_or_else(truncated)?;
            let mut out = vec![0u8; n.checked_mul(3).ok_or("image too large")?];
            let x5 = |v: u16| ((v & 31) as u32 * 255 / 31) as u8;
            for r in 0..h {
                let src = &data[r * stride..][..2 * w];
                let dst = &mut out[row(r) * w * 3..][..w * 3];
                for (px, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(2)) {
                    let v = u16::from_le_bytes([s[0], s[1]]);
                    let rgb = if *green6 {
                        [x5(v >> 11), (((v >> 5) & 63) as u32 * 255 / 63) as u8, x5(v)]
                    } else {
                        [x5(v >> 10), x5(v >> 5), x5(v)]
                    };
                    px.copy_from_slice(&rgb);
                }
            }
            Ok(DynamicImage::ImageRgb8(RgbImage::from_raw(l.width, l.height, out).expect("sized buffer")))
        }
        BmpKind::Rle { rle4, palette, grey } => {
            let idx = bmp_rle(b, l.data_offset, w, n, *rle4)?;
            let mut out = vec![0u8; n.checked_mul(if *grey { 1 } else { 3 }).ok_or("image too large")?];
            let ch = if *grey { 1 } else { 3 };
            for r in 0..h {
                let dst = &mut out[row(r) * w * ch..][..w * ch];
                for (px, &i) in dst.chunks_exact_mut(ch).zip(&idx[r * w..(r + 1) * w]) {
                    if *grey {
                        px[0] = i; // mode L: the index itself
                    } else {
                        // An index past the palette is black in PIL's RGB conversion.
                        px.copy_from_slice(palette.get(i as usize).map_or(&[0u8; 3][..], |c| &c[..]));
                    }
                }
            }
            Ok(if *grey {
                DynamicImage::ImageLuma8(image::GrayImage::from_raw(l.width, l.height, out).expect("sized buffer"))
            } else {
                DynamicImage::ImageRgb8(RgbImage::from_raw(l.width, l.height, out).expect("sized buffer"))
            })
        }
    }
}

/// Pillow's `BmpRleDecoder.decode`, step for step: palette indices in file row order. Skipped pixels
/// (end of line, delta) are index 0; a run past the row's end is cut; an absolute run may cross rows;
/// data that ends before the last pixel (an early end of bitmap included) is refused, as Pillow
/// refuses it ("not enough image data").
pub(super) fn bmp_rle(b: &[u8], start: usize, w: usize, n: usize, rle4: bool) -> Result<Vec<u8>, String> {
    let mut data: Vec<u8> = Vec::with_capacity(n);
    let mut pos = start;
    let mut x = 0usize;
    let read = |pos: &mut usize, k: usize| -> &[u8] {
        let s = b.get(*pos..).unwrap_or(&[]);
        let s = &s[..k.min(s.len())];
        *pos += s.len();
        s
    };
    while data.len() < n {
        let op = read(&mut pos, 2);
        if op.len() < 2 {
            break;
        }
        let (count, byte) = (op[0] as usize, op[1]);
        if count != 0 {
            // Encoded mode: `count` pixels, cut at the row's end.
            let count = if x + count > w { w.saturating_sub(x) } else { count };
            for i in 0..count {
                data.push(if !rle4 {
                    byte
                } else if i % 2 == 0 {
                    byte >> 4
                } else {
                    byte & 15
                });
            }
            x += count;
        } else if byte == 0 {
            // End of line: the rest of the row is index 0.
            let pad = (w - data.len() % w) % w;
            data.resize(data.len() + pad, 0);
            x = 0;
        } else if byte == 1 {
            break; // end of bitmap
        } else if byte == 2 {
            let d = read(&mut pos, 2);
            if d.len() < 2 {
                break;
            }
            let skip = (d[0] as usize + d[1] as usize * w).min(n - data.len());
            data.resize(data.len() + skip, 0);
            x = data.len() % w;
        } else {
            // Absolute mode: `byte` literal pixels, then alignment to an even file offset.
            let count = (n - data.len()).min(byte as usize);
            let want = if rle4 { count.div_ceil(2) } else { count };
            let lit = read(&mut pos, want);
            let got = lit.len();
            if rle4 {
                for (i, &v) in lit.iter().enumerate() {
                    data.push(v >> 4);
                    if i * 2 + 1 < count {
                        data.push(v & 15);
                    }
                }
            } else {
                data.extend_from_slice(lit);
            }
            if got < want || data.len() == n {
                break;
            }
            x += byte as usize;
            pos += pos % 2;
        }
    }
    data.truncate(n);
    if data.len() < n {
        return Err("RLE data ends before the last pixel (Pillow: not enough image data)".into());
    }
    Ok(data)
}

/// 16-bit to 8-bit by keeping the high byte, as Pillow's `;16B` raw modes do.
pub(super) fn high_bytes(img: DynamicImage) -> DynamicImage {
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
pub(super) trait FirstChannel {
    fn to_luma8_first(&self) -> image::GrayImage;
}

impl FirstChannel for DynamicImage {
    fn to_luma8_first(&self) -> image::GrayImage {
        let rgb = self.to_rgb8();
        image::GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| image::Luma([rgb.get_pixel(x, y).0[0]]))
    }
}

/// GIF canvas outside the first frame: image gives transparent black, PIL the fill index's colour.
pub(super) fn fill_outside(rgb: &mut RgbImage, src: &DynamicImage, fill: [u8; 3]) {
    if let DynamicImage::ImageRgba8(rgba) = src {
        for (p, s) in rgb.pixels_mut().zip(rgba.pixels()) {
            if s.0 == [0, 0, 0, 0] {
                *p = image::Rgb(fill);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PreprocessError;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name))
            .unwrap()
    }

    const LIMITS: DecodeLimits = DecodeLimits { max_alloc: 1 << 30, max_side: 100_000 };

    /// The fallback decoder's output goes through the pixel cap, the minimum side, the aspect limit
    /// and must have the size the probe checked (before the fix it was never checked at all).
    #[test]
    fn fallback_jpeg_decoder_is_size_checked() {
        let jpeg = fixture("coffee_odd_225x301.jpg");
        let ok = fallback_jpeg(&jpeg, "declined", (225, 301), LIMITS, 100_000_000, true).unwrap();
        assert_eq!((ok.width(), ok.height()), (225, 301));
        let capped = fallback_jpeg(&jpeg, "declined", (225, 301), LIMITS, 50_000, true);
        assert!(matches!(capped, Err(PreprocessError::TooManyPixels { .. })), "{capped:?}");
        let other = fallback_jpeg(&jpeg, "declined", (224, 224), LIMITS, 100_000_000, true).unwrap_err();
        assert!(other.to_string().contains("225x301") && other.to_string().contains("224x224"), "{other}");
    }

    /// The image crate's Limits carry the longest side: its decoders refuse before allocating.
    #[test]
    fn image_crate_limits_carry_the_side_bound() {
        let png = fixture("coffee_rgba_300x200.png");
        let small = DecodeLimits { max_alloc: 1 << 30, max_side: 250 };
        assert!(matches!(image_decoder(&png, ImageFormat::Png, small).err(), Some(ImageError::Limits(_))));
        assert!(image_decoder(&png, ImageFormat::Png, LIMITS).is_ok());
    }

    /// 16-bit BMP channels expand as Pillow's `Unpack.c` does (`v * 255 / 31`, truncated), not rounded
    /// as the image crate does (5-bit 3 -> 24, not 25); a bitfields layout Pillow refuses is refused.
    #[test]
    fn bmp_16bit_expands_as_pillow() {
        let mut b = fixture("coffee_16bit_565_120x90.bmp");
        let at = usize::try_from(le32(&b, 10).unwrap()).unwrap();
        b[at..at + 2].copy_from_slice(&(3u16 << 11 | 3 << 5 | 3).to_le_bytes()); // bottom-left pixel
        let Some(Ok(layout)) = bmp_pil_layout(&b) else { panic!("not ours") };
        let img = bmp_pil_decode(&b, &layout).unwrap().to_rgb8();
        assert_eq!(img.get_pixel(0, 89).0, [24, 12, 24]);
        b[54..58].copy_from_slice(&0xF00u32.to_le_bytes());
        assert!(matches!(bmp_pil_layout(&b), Some(Err(_))));
    }

    /// RLE: skipped pixels are palette index 0; data that stops before the last pixel is refused
    /// (Pillow: "not enough image data").
    #[test]
    fn bmp_rle_follows_pillow() {
        // 4x2 RLE8, palette [red, green]: row 0 (bottom) = one green pixel then end of line; row 1 =
        // a delta of 2, then two green pixels.
        let mut b = b"BM".to_vec();
        let pixels = [1u8, 1, 0, 0, 0, 2, 2, 0, 2, 1, 0, 1];
        b.extend_from_slice(&(14 + 40 + 8 + pixels.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0, 0, 0, 0]);
        b.extend_from_slice(&(14u32 + 40 + 8).to_le_bytes());
        for v in [40u32, 4, 2] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[1, 0, 8, 0]);
        for v in [1u32, pixels.len() as u32, 0, 0, 2, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[0, 0, 255, 0, 0, 255, 0, 0]);
        b.extend_from_slice(&pixels);
        let Some(Ok(layout)) = bmp_pil_layout(&b) else { panic!("not ours") };
        let img = bmp_pil_decode(&b, &layout).unwrap().to_rgb8();
        let (r, g) = ([255, 0, 0], [0, 255, 0]);
        let got: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        assert_eq!(got, [r, r, g, g, g, r, r, r]);
        let early = b.len() - 4; // end of bitmap right after the delta: the last 2 pixels are missing
        b[early..].copy_from_slice(&[0, 1, 0, 0]);
        assert!(bmp_pil_decode(&b, &layout).unwrap_err().contains("not enough image data"));
    }

    /// An 8-bit BMP declaring 0x40000001 colours: on wasm32 `4 * colors` wrapped to 4 and the
    /// palette slice panicked. Now the count is capped before it sizes anything.
    #[test]
    fn bmp_palette_count_is_capped() {
        let mut b = fixture("chelsea_8bit_palette_120x80.bmp");
        b[46..50].copy_from_slice(&0x4000_0001u32.to_le_bytes());
        assert!(bmp_mode(&b).palette);
        b[14..18].copy_from_slice(&u32::MAX.to_le_bytes()); // header size: 14 + it overflows on wasm32
        let _ = bmp_mode(&b);
    }
}
