//! Preprocessing parity with open_clip (PIL + torchvision) and bad-input handling.
//!
//! References: tests/fixtures/preprocess/*.png, written by tests/reference/make_preprocess_fixtures.py
//! (open_clip ViT-B-16 eval preprocess before Normalize, after PIL.ImageOps.exif_transpose).

use std::path::{Path, PathBuf};

use dermlip::input::preprocess::{
    crop_box, crop_rgb, crop_rgb_with_box, load_rgb, preprocess, Interpolation, PreprocessConfig, PreprocessError,
    ResizeMode,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Runs `crop_rgb` on every manifest entry, prints max |Δ| per image and asserts it is <= 2.
fn check_manifest(manifest: &str, min_entries: usize) {
    let manifest: serde_json::Value = serde_json::from_slice(&read(manifest)).unwrap();
    let size = manifest["size"].as_u64().unwrap() as u32;
    let entries = manifest["images"].as_array().unwrap();
    assert!(entries.len() >= min_entries, "expected at least {min_entries} fixture images, got {}", entries.len());

    let mut failures = Vec::new();
    println!("{:<40} {:>6} {:>10}", "image", "max|Δ|", "pixels≠");
    for e in entries {
        let file = e["file"].as_str().unwrap();
        // Entries of variants.json also name the open_clip interpolation / resize_mode.
        let cfg = PreprocessConfig::from_open_clip(e, size).unwrap();
        let reference = image::load_from_memory(&read(e["reference"].as_str().unwrap())).unwrap().to_rgb8();
        let got = match crop_rgb(&read(file), &cfg) {
            Ok(img) => img,
            Err(err) => {
                failures.push(format!("{file}: {err}"));
                continue;
            }
        };
        assert_eq!(got.dimensions(), (size, size), "{file}");
        let diffs = got.as_raw().iter().zip(reference.as_raw()).map(|(a, b)| a.abs_diff(*b));
        let (max, count) = diffs.fold((0u8, 0usize), |(m, n), d| (m.max(d), n + (d > 0) as usize));
        println!("{:<40} {:>6} {:>10}", file.trim_start_matches("images/"), max, count);
        if max > 2 {
            failures.push(format!("{file}: max |Δ| = {max} > 2"));
        }
    }
    assert!(failures.is_empty(), "parity failures:\n{}", failures.join("\n"));
}

#[test]
fn crop_matches_open_clip_on_every_fixture() {
    check_manifest("preprocess/manifest.json", 20);
}

#[test]
fn crop_matches_open_clip_with_bilinear_and_squash() {
    check_manifest("preprocess/variants.json", 4);
    let v = serde_json::json!({"interpolation": "bilinear", "resize_mode": "squash"});
    let cfg = PreprocessConfig::from_open_clip(&v, 224).unwrap();
    assert_eq!((cfg.interpolation, cfg.resize_mode), (Interpolation::Bilinear, ResizeMode::Squash));
}

#[test]
fn preprocess_normalises_the_crop() {
    let bytes = read("images/astronaut_512_q90_420.jpg");
    let cfg = PreprocessConfig::default();
    let crop = crop_rgb(&bytes, &cfg).unwrap();
    let t = preprocess(&bytes, &cfg).unwrap();
    assert_eq!(t.len(), 3 * 224 * 224);
    let (x, y) = (100u32, 50u32);
    for c in 0..3 {
        let v = crop.get_pixel(x, y).0[c] as f32 / 255.0;
        assert_eq!(t[c * 224 * 224 + (y * 224 + x) as usize], (v - cfg.mean[c]) / cfg.std[c]);
    }
}

#[test]
fn load_rgb_applies_exif_orientation() {
    // chelsea_exif6 is stored 200x300 with orientation 6 (rotate 90° clockwise to display).
    let img = load_rgb(&read("images/chelsea_exif6_300x200.jpg"), 100_000_000).unwrap();
    assert_eq!(img.dimensions(), (300, 200));
}

// ---------------------------------------------------------------------------------------------
// Bad inputs: each must give an Err with a message naming the problem, never a panic.

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let img = image::GrayImage::new(w, h);
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// Rewrites the IHDR width/height of a PNG (and its CRC), leaving the pixel data as it is.
fn png_claiming(mut bytes: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    bytes
}

fn err(bytes: &[u8], cfg: &PreprocessConfig) -> String {
    match crop_rgb(bytes, cfg) {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one-line message expected: {msg:?}");
            println!("{msg}");
            msg
        }
    }
}

#[test]
fn rejects_zero_bytes() {
    assert!(matches!(crop_rgb(&[], &PreprocessConfig::default()), Err(PreprocessError::Empty)));
    assert!(err(&[], &PreprocessConfig::default()).contains("zero bytes"));
}

#[test]
fn rejects_text_named_jpg() {
    let msg = err(b"This is a text file, renamed to photo.jpg.\n", &PreprocessConfig::default());
    assert!(msg.contains("not a JPEG, PNG, WebP, GIF or BMP"), "{msg}");
}

#[test]
fn rejects_truncated_and_corrupt_jpeg() {
    let cfg = PreprocessConfig::default();
    let jpeg = read("images/coffee_600x400_progressive.jpg");
    for cut in [jpeg.len() / 2, jpeg.len() - 3, 700] {
        let msg = err(&jpeg[..cut], &cfg);
        assert!(msg.contains("JPEG"), "{msg}");
    }
    let baseline = read("images/astronaut_512_q90_420.jpg");
    assert!(err(&baseline[..baseline.len() / 3], &cfg).contains("truncated"));
    let mut garbage = vec![0xFF, 0xD8, 0xFF, 0xE0];
    garbage.extend(std::iter::repeat_n(0x42, 300));
    assert!(err(&garbage, &cfg).contains("JPEG"));
}

#[test]
fn rejects_truncated_and_corrupt_png() {
    let cfg = PreprocessConfig::default();
    let bytes = read("images/camera_l_333x251.png");
    assert!(err(&bytes[..bytes.len() / 2], &cfg).contains("PNG"));
    assert!(err(&bytes[..30], &cfg).contains("PNG"));
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid..mid + 64].iter_mut().for_each(|b| *b ^= 0x5A);
    assert!(err(&corrupt, &cfg).contains("PNG"));
}

#[test]
fn rejects_tiny_and_elongated_images() {
    let cfg = PreprocessConfig::default();
    assert!(err(&png(1, 1), &cfg).contains("1x1"));
    let msg = err(&png(20000, 1), &cfg);
    assert!(msg.contains("20000x1") && msg.contains("at least 16"), "{msg}");
    let msg = err(&png(400, 16), &cfg);
    assert!(msg.contains("aspect ratio"), "{msg}");
    assert!(crop_rgb(&png(320, 16), &cfg).is_ok(), "20:1 is allowed");
}

#[test]
fn rejects_pixel_bombs_before_decoding() {
    // A valid 4000x4000 PNG of zeros: ~16 KB on disk, 16 MP decoded; refused under a 1 MP cap.
    let bomb = png(4000, 4000);
    assert!(bomb.len() < 100_000);
    let small_cap = PreprocessConfig { max_pixels: 1_000_000, ..PreprocessConfig::default() };
    let msg = err(&bomb, &small_cap);
    assert!(msg.contains("16.00 megapixels") && msg.contains("limit of 1.00 megapixels"), "{msg}");
    // A 200-byte PNG whose header claims 30000x30000 (900 MP): refused under the default 100 MP cap.
    let claim = png_claiming(png(16, 16), 30000, 30000);
    let msg = err(&claim, &PreprocessConfig::default());
    assert!(msg.contains("900.00 megapixels"), "{msg}");
    // Just above the default cap.
    let msg = err(&png_claiming(png(16, 16), 10001, 10000), &PreprocessConfig::default());
    assert!(msg.contains("100.01 megapixels") && msg.contains("limit of 100.00 megapixels"), "{msg}");
    // Under the cap the claimed size is decoded and the missing data reported.
    assert!(err(&png_claiming(png(16, 16), 2000, 2000), &PreprocessConfig::default()).contains("PNG"));
}

#[test]
fn rejects_unsupported_formats() {
    let cfg = PreprocessConfig::default();
    let tiff = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    assert!(err(tiff, &cfg).contains("unsupported image format"));
    let gif_header_only = b"GIF89a\x10\x00\x10\x00\x00\x00\x00";
    assert!(err(gif_header_only, &cfg).contains("GIF"));
}

/// JPEGs with damaged APPn/COM segments (`tests/reference/make_damaged_jpegs.py`): the same pixels
/// and EXIF orientation as PIL on every file PIL decodes, and a refusal wherever PIL refuses.
#[test]
fn damaged_app_segments_match_pil() {
    check_manifest("preprocess/damaged-app/manifest.json", 120);
    let manifest: serde_json::Value = serde_json::from_slice(&read("preprocess/damaged-app/manifest.json")).unwrap();
    let cfg = PreprocessConfig::default();
    let refused = manifest["refused"].as_array().unwrap();
    assert!(refused.len() >= 20, "expected at least 20 files PIL refuses, got {}", refused.len());
    let accepted: Vec<String> = refused
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .filter(|file| crop_rgb(&read(file), &cfg).is_ok())
        .map(|file| format!("{file}: PIL refuses it, dermlip decodes it"))
        .collect();
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

/// The square the model sees, mapped back to the photo (shown on the web page's preview): worked
/// by hand from torchvision's `Resize(224)` (`int(224 * long / short)`) and `CenterCrop(224)`
/// (`round((n - 224) / 2)`, half to even).
#[test]
fn crop_box_is_the_centre_crop_in_the_photos_pixels() {
    let cfg = PreprocessConfig::default();
    let cases = [
        // 451x300 -> 336x224, x offset 56
        ((451, 300), (56.0 * 451.0 / 336.0, 0.0, 224.0 * 451.0 / 336.0, 300.0)),
        // 100x800 -> 224x1792, y offset 784
        ((100, 800), (0.0, 350.0, 100.0, 100.0)),
        // 225x224 -> 225x224, offset round(0.5) = 0 (half to even)
        ((225, 224), (0.0, 0.0, 224.0, 224.0)),
        // 227x224 -> offset round(1.5) = 2
        ((227, 224), (2.0, 0.0, 224.0, 224.0)),
        ((224, 224), (0.0, 0.0, 224.0, 224.0)),
    ];
    for ((w, h), (x, y, bw, bh)) in cases {
        let b = crop_box(w, h, &cfg);
        let got = (b.x, b.y, b.width, b.height);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(got.0, x) && close(got.1, y) && close(got.2, bw) && close(got.3, bh), "{w}x{h}: {got:?}");
        assert_eq!((b.image_width, b.image_height), (w, h));
    }
    // Decoding agrees with the plan, EXIF orientation applied (stored 300x200, shown rotated).
    for rel in ["images/chelsea_451x300_q95_444.jpg", "images/chelsea_exif6_300x200.jpg"] {
        let bytes = read(rel);
        let (rgb, b) = crop_rgb_with_box(&bytes, &cfg).unwrap();
        assert_eq!(rgb.dimensions(), (224, 224));
        let shown = load_rgb(&bytes, cfg.max_pixels).unwrap().dimensions();
        assert_eq!((b.image_width, b.image_height), shown, "{rel}");
        assert_eq!(b, crop_box(shown.0, shown.1, &cfg), "{rel}");
    }
}

/// A chosen region (the web page's movable crop, `--region`) is preprocessed as the same pixels
/// cut out and saved as a photo of their own would be (PIL: `img.crop(box)` first), and its crop
/// box is in the whole image's pixels.
#[test]
fn a_chosen_region_equals_the_region_saved_as_its_own_photo() {
    use dermlip::input::preprocess::{crop_rgb_region, Region};
    let cfg = PreprocessConfig::default();
    for (rel, region) in [
        ("images/coffee_palette_300x200.png", Region { x: 40, y: 10, width: 150, height: 150 }),
        ("images/chelsea_451x300_q95_444.jpg", Region { x: 200, y: 50, width: 120, height: 90 }),
        ("images/chelsea_exif6_300x200.jpg", Region { x: 120, y: 20, width: 160, height: 160 }),
    ] {
        let bytes = read(rel);
        // The region cut from the decoded (oriented) image and stored losslessly as an RGB PNG.
        let whole = load_rgb(&bytes, cfg.max_pixels).unwrap();
        let cut = image::imageops::crop_imm(&whole, region.x, region.y, region.width, region.height).to_image();
        let mut png = Vec::new();
        cut.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let (want, want_box) = crop_rgb_with_box(&png, &cfg).unwrap();
        let (got, b) = crop_rgb_region(&bytes, &cfg, Some(region)).unwrap();
        if rel.ends_with(".png") {
            // A palette PNG resizes with nearest-neighbour in PIL, an RGB one with bicubic: compare
            // the RGB conversion of both paths only for the JPEGs; here check shape and box.
            assert_eq!(got.dimensions(), (224, 224));
        } else {
            assert!(got == want, "{rel}: the region's pixels differ from the cut-out photo's");
        }
        assert!(
            (b.x - (region.x as f64 + want_box.x)).abs() < 1e-9 && (b.y - (region.y as f64 + want_box.y)).abs() < 1e-9,
            "{rel}: {b:?}"
        );
        assert!((b.width - want_box.width).abs() < 1e-9 && (b.height - want_box.height).abs() < 1e-9, "{rel}: {b:?}");
        assert_eq!((b.image_width, b.image_height), whole.dimensions());
        // A square region is exactly what the model sees.
        if region.width == region.height {
            assert_eq!(
                (b.x, b.y, b.width, b.height),
                (region.x as f64, region.y as f64, region.width as f64, region.height as f64)
            );
        }
    }
    // Outside the image, or too small for the model: one clear error each.
    let bytes = read("images/chelsea_451x300_q95_444.jpg");
    let err = crop_rgb_region(&bytes, &cfg, Some(Region { x: 400, y: 0, width: 100, height: 100 })).unwrap_err();
    assert!(err.to_string().contains("is not inside the 451x300 image"), "{err}");
    let err = crop_rgb_region(&bytes, &cfg, Some(Region { x: u32::MAX, y: 0, width: 2, height: 100 })).unwrap_err();
    assert!(err.to_string().contains("is not inside"), "{err}");
    let err = crop_rgb_region(&bytes, &cfg, Some(Region { x: 0, y: 0, width: 10, height: 100 })).unwrap_err();
    assert!(matches!(err, PreprocessError::TooSmall { .. }), "{err}");
    // No region is the whole photo.
    assert!(crop_rgb_region(&bytes, &cfg, None).unwrap() == crop_rgb_with_box(&bytes, &cfg).unwrap());
}
