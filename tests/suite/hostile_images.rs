//! Hostile images: crafted files must give a clean error (or a picture) within the documented limits
//! (`src/limits.rs`), never a panic, a huge allocation or a long decode. The wasm engine dies on a
//! panic, so every path here must return. The crafted bytes are built from the committed fixtures.
//! `tests/hostile/make_corpus.py` writes a larger corpus for the CLI (`tests/hostile/run_cli.sh`).

use std::path::Path;
use std::time::{Duration, Instant};

use dermlip::input::preprocess::{crop_rgba, load_rgb, preprocess, PreprocessConfig, PreprocessError};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Offset of the first segment with `marker` (walking segments from SOI; stops at the first scan).
fn find_segment(b: &[u8], marker: u8) -> Option<usize> {
    let mut i = 2;
    while b[i] == 0xFF && b[i + 1] != 0xDA {
        if b[i + 1] == marker {
            return Some(i);
        }
        i += 2 + u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
    }
    None
}

fn segment(b: &[u8], marker: u8) -> usize {
    find_segment(b, marker).unwrap_or_else(|| panic!("no segment {marker:#x}"))
}

/// The JPEG with its frame header claiming `w`×`h`.
fn with_frame_size(mut b: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    let sof = [0xC0, 0xC1, 0xC2].iter().find_map(|&m| find_segment(&b, m)).unwrap();
    b[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    b[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    b
}

fn run(bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
    preprocess(bytes, &PreprocessConfig::default())
}

/// `FF 00` where a marker is expected: libjpeg skips it (`next_marker`), the old probe read it as a
/// segment with a length, and so could be shown a 224x224 frame hidden in an APP1 segment while the
/// decoder saw the real one. Now both read markers as libjpeg does: the real frame is checked.
fn ff00_hidden_frame(w: u16, h: u16) -> Vec<u8> {
    let base = with_frame_size(fixture("coffee_odd_225x301.jpg"), w, h);
    let fake_sof: [u8; 19] = [
        0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0xE0, 0x00, 0xE0, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11,
        0x01,
    ];
    let mut b = vec![0xFF, 0xD8];
    b.extend_from_slice(&[0xFF, 0x00, 0x00, 0x08]); // read as "segment 00, length 8" by the old probe
    b.extend_from_slice(&[0xFF, 0xE1, 0x00, 2 + 2 + fake_sof.len() as u8, b'X', b'X']); // APP1 for libjpeg
    b.extend_from_slice(&fake_sof); // where the old probe landed
    b.extend_from_slice(&base[2..]);
    b
}

#[test]
fn ff00_in_marker_position_hides_no_frame() {
    // The trick file itself is fine when the real frame is: both see 225x301.
    let img = load_rgb(&ff00_hidden_frame(225, 301), 100_000_000).unwrap();
    assert_eq!(img.dimensions(), (225, 301));
    let e = run(&ff00_hidden_frame(4000, 20)).unwrap_err();
    assert!(matches!(e, PreprocessError::ExtremeAspect { width: 4000, height: 20 }), "{e}");
    let e = run(&ff00_hidden_frame(65535, 65535)).unwrap_err();
    assert!(matches!(e, PreprocessError::TooManyPixels { width: 65535, height: 65535, .. }), "{e}");
}

#[test]
fn second_frame_header_is_refused() {
    // A small SOF0, then a huge one: libjpeg refuses two frame headers, and so do we (before any
    // decoder could pick the second).
    let base = fixture("coffee_odd_225x301.jpg");
    let sof = segment(&base, 0xC0);
    let len = 2 + u16::from_be_bytes([base[sof + 2], base[sof + 3]]) as usize;
    let mut huge = base[sof..sof + len].to_vec();
    huge[5..9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let mut b = base[..sof + len].to_vec();
    b.extend_from_slice(&huge);
    b.extend_from_slice(&base[sof + len..]);
    let e = run(&b).unwrap_err().to_string();
    assert!(e.contains("more than one frame header"), "{e}");
}

/// `count` empty scans (headers without entropy data) of `kind` inserted before EOI.
fn scan_bomb(frame: (u16, u16), count: usize, kind: [u8; 3]) -> Vec<u8> {
    let base = with_frame_size(fixture("coffee_600x400_progressive.jpg"), frame.0, frame.1);
    let eoi = base.len() - 2;
    assert_eq!(&base[eoi..], &[0xFF, 0xD9]);
    let mut b = base[..eoi].to_vec();
    for _ in 0..count {
        // One component (id 1, the luma), tables 0/0, then Ss, Se, Ah<<4|Al.
        b.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00]);
        b.extend_from_slice(&kind);
    }
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

const AC_REFINE: [u8; 3] = [1, 63, 0x10];
const DC_REFINE: [u8; 3] = [0, 0, 0x10];

fn timed<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < limit, "{what} took {:?}", start.elapsed());
    out
}

#[test]
fn progressive_scan_bomb_is_refused_quickly() {
    // 1100 empty DC refinement scans over a 4000x4000 frame: before the fix, each walked all
    // 250 000 luma blocks and the file was accepted. Now: over the scan limit.
    let e =
        timed("1100 scans", Duration::from_secs(10), || run(&scan_bomb((4000, 4000), 1100, DC_REFINE)).unwrap_err());
    assert!(e.to_string().contains("more than 1000 scans"), "{e}");
    // 900 full-band refinement scans (63 coefficients of each of those blocks per scan before the
    // fix): under the scan limit, over the coefficient-pass budget.
    let e = timed("900 scans", Duration::from_secs(10), || run(&scan_bomb((4000, 4000), 900, AC_REFINE)).unwrap_err());
    assert!(e.to_string().contains("more than 16 times"), "{e}");
}

#[test]
fn empty_scans_cost_nothing() {
    // Within the budget, empty scans are skipped as libjpeg does once the data runs out
    // (`insufficient_data`): the decode finishes, and an empty scan does not walk the frame.
    let out = timed("12 empty scans", Duration::from_secs(20), || run(&scan_bomb((2000, 2000), 12, AC_REFINE)));
    assert!(out.is_ok(), "{:?}", out.err());
    // With the real frame, the picture is the one without the empty scans.
    let plain = run(&fixture("coffee_600x400_progressive.jpg")).unwrap();
    let with_empty = run(&scan_bomb((600, 400), 5, [0, 0, 0x01])).unwrap();
    assert!(plain.len() == with_empty.len());
}

#[test]
fn extreme_shapes_are_refused_before_any_resampling() {
    let cfg = PreprocessConfig::default();
    // Raw pixels: the shape is checked before the byte count or anything else is sized.
    for (w, h) in [(65500, 1), (1, 65500), (u32::MAX, u32::MAX), (65535, 65535), (100_000, 16)] {
        let e = crop_rgba(&[0; 64], w, h, &cfg).unwrap_err();
        assert!(
            matches!(
                e,
                PreprocessError::TooSmall { .. }
                    | PreprocessError::TooManyPixels { .. }
                    | PreprocessError::ExtremeAspect { .. }
            ),
            "{w}x{h}: {e}"
        );
    }
    // Encoded images claiming 65500x1 / 1x65500 / 65500x16: refused from the header.
    let jpeg = fixture("coffee_odd_225x301.jpg");
    for (w, h) in [(65500u16, 1u16), (1, 65500), (65500, 16)] {
        let e = run(&with_frame_size(jpeg.clone(), w, h)).unwrap_err();
        assert!(matches!(e, PreprocessError::TooSmall { .. } | PreprocessError::ExtremeAspect { .. }), "{e}");
    }
    let mut gif = fixture("chelsea_palette_240x160.gif");
    gif[6..10].copy_from_slice(&[0xDC, 0xFF, 0x01, 0x00]); // screen 65500x1
    assert!(matches!(run(&gif).unwrap_err(), PreprocessError::TooSmall { .. }));
    let mut bmp = fixture("coffee_24bit_90x60.bmp");
    bmp[18..26].copy_from_slice(&[0xDC, 0xFF, 0, 0, 1, 0, 0, 0]); // 65500x1
    assert!(matches!(run(&bmp).unwrap_err(), PreprocessError::TooSmall { .. }));
}

#[test]
fn bmp_headers_cannot_overflow() {
    let base = fixture("chelsea_8bit_palette_120x80.bmp");
    for (at, value) in [(46, 0x4000_0001u32), (46, u32::MAX), (46, 257), (14, u32::MAX), (14, 0xFFFF_FFF0), (28, 8)] {
        let mut b = base.clone();
        b[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let r = std::panic::catch_unwind(|| run(&b));
        assert!(r.is_ok(), "BMP with {value:#x} at byte {at} panicked");
    }
}

// ---------------------------------------------------------------------------------------------
// A small deterministic fuzz pass over every committed fixture image.

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation: a bit flip, a truncation, inserted or overwritten bytes, biased to the header.
fn mutate(rng: &mut XorShift, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    // An offset below `len`, three times in four within the first kilobyte (the headers).
    let at = |rng: &mut XorShift, len: usize| if rng.below(4) == 0 { rng.below(len) } else { rng.below(len.min(1024)) };
    let interesting = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE];
    for _ in 0..1 + rng.below(3) {
        if b.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => {
                let i = at(rng, b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(b.len())),
            2 => {
                let i = at(rng, b.len());
                let n = 1 + rng.below(8);
                for k in 0..n {
                    b.insert(i, if k % 2 == 0 { interesting[rng.below(6)] } else { rng.next() as u8 });
                }
            }
            3 => {
                let i = at(rng, b.len());
                for k in i..(i + 1 + rng.below(4)).min(b.len()) {
                    b[k] = interesting[rng.below(6)];
                }
            }
            4 => {
                let i = at(rng, b.len());
                let n = rng.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            _ => {
                // A 16/32-bit field set to an extreme (sizes, lengths, offsets).
                let i = at(rng, b.len().saturating_sub(4));
                let v: [u8; 4] = match rng.below(3) {
                    0 => [0xFF; 4],
                    1 => [0, 0, 0, 0],
                    _ => (rng.next() as u32).to_le_bytes(),
                };
                let n = (b.len() - i).min(if rng.below(2) == 0 { 2 } else { 4 });
                b[i..i + n].copy_from_slice(&v[..n]);
            }
        }
    }
    b
}

#[test]
fn fuzz_fixture_mutations_never_panic() {
    // HOSTILE_FUZZ_DIR: mutate another folder's files (say, make_corpus.py's output) instead.
    let dir = std::env::var_os("HOSTILE_FUZZ_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "md"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "{} fixture images", files.len());
    let cfg = PreprocessConfig::default();
    // HOSTILE_FUZZ_SEED / HOSTILE_FUZZ_SECONDS run a longer pass locally; CI uses the defaults.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = XorShift(env("HOSTILE_FUZZ_SEED").unwrap_or(0x5EED_DE4D_B33F_0001).max(1));
    let seconds = env("HOSTILE_FUZZ_SECONDS").unwrap_or(15);
    let rounds = if env("HOSTILE_FUZZ_SECONDS").is_some() { usize::MAX } else { 100 };
    let start = Instant::now();
    let (mut runs, mut panics, mut slowest) = (0, Vec::new(), (Duration::ZERO, String::new()));
    // Rounds over every file; the time bound keeps the pass short on a slow machine (the sequence
    // of mutations is the same on every run, only how far it gets may differ).
    'rounds: for round in 0..rounds {
        for f in &files {
            if start.elapsed() > Duration::from_secs(seconds) {
                break 'rounds;
            }
            let src = std::fs::read(f).unwrap();
            // Large fixtures cost more per decode: fewer mutations of them.
            if src.len() > 60_000 && round % 4 != 0 {
                continue;
            }
            let m = mutate(&mut rng, &src);
            runs += 1;
            let t = Instant::now();
            let r = std::panic::catch_unwind(|| {
                let _ = preprocess(&m, &cfg);
            });
            if t.elapsed() > slowest.0 {
                slowest = (t.elapsed(), f.file_name().unwrap().to_string_lossy().into_owned());
            }
            if r.is_err() {
                let out = std::env::temp_dir()
                    .join(format!("dermlip-fuzz-{}-{runs}", f.file_name().unwrap().to_string_lossy()));
                std::fs::write(&out, &m).unwrap();
                panics.push(out.display().to_string());
            }
        }
    }
    println!(
        "fuzz: {runs} mutated images in {:?}; slowest {:?} (a mutation of {})",
        start.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(runs >= files.len(), "only {runs} mutations ran");
    assert!(panics.is_empty(), "panicked on: {panics:?}");
}

// ---------------------------------------------------------------------------------------------
// EXIF orientation outside JPEG: a PNG `eXIf` chunk and a WebP `EXIF` chunk are applied, as
// browsers apply them (XMP orientation is not: browsers ignore it).

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A little-endian TIFF block with one IFD entry: Orientation = `o`.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut t = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
    t.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    t.extend_from_slice(&o.to_le_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t
}

#[test]
fn exif_orientation_in_png_and_webp_is_applied() {
    let mut png = Vec::new();
    image::RgbImage::new(48, 32).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    let exif = exif_orientation(6);
    let mut chunk = (exif.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"eXIf");
    chunk.extend_from_slice(&exif);
    chunk.extend_from_slice(&crc32(&chunk[4..]).to_be_bytes());
    png.splice(33..33, chunk); // after the signature and IHDR
    assert_eq!(load_rgb(&png, 100_000_000).unwrap().dimensions(), (32, 48));

    // The committed lossy WebP ("RIFF" size "WEBP" "VP8 " ...) wrapped with VP8X and an EXIF chunk.
    let lossy = fixture("rocket_lossy_q80_480x320.webp");
    assert_eq!(&lossy[12..16], b"VP8 ");
    let vp8_len = u32::from_le_bytes(lossy[16..20].try_into().unwrap()) as usize;
    let mut body = b"WEBPVP8X\x0a\x00\x00\x00\x08\x00\x00\x00".to_vec();
    body.extend_from_slice(&[(479 & 0xFF) as u8, (479 >> 8) as u8, 0, (319 & 0xFF) as u8, (319 >> 8) as u8, 0]);
    body.extend_from_slice(&lossy[12..20 + vp8_len + vp8_len % 2]);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    body.extend_from_slice(&exif);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(body.len() as u32).to_le_bytes());
    webp.extend_from_slice(&body);
    assert_eq!(load_rgb(&webp, 100_000_000).unwrap().dimensions(), (320, 480));
}
