//! A JPEG decoder that reproduces libjpeg-turbo (Pillow's decoder, default settings) bit for bit.
//!
//! zune-jpeg, used by the image crate, rounds its chroma upsampling and IDCT differently, which puts
//! 4:2:0 photos up to 6/255 away from PIL. This decoder ports the parts of libjpeg-turbo that
//! define the output values: the ISLOW integer IDCT (`jidctint.c`), the "fancy" triangle-filter
//! upsampling (`jdsample.c`, with `jdmainct.c`'s edge context rows) and the table-driven YCbCr->RGB
//! / YCCK->CMYK conversion (`jdcolor.c`). Entropy decoding follows the standard, so any correct
//! decoder yields the same coefficients.
//!
//! Supported: 8-bit Huffman baseline, extended and progressive JPEGs with 1, 3 or 4 components.
//! Anything else (arithmetic coding, 12-bit, lossless, a zero frame height that needs DNL, fractional
//! sampling) returns `Err`, and
//! the caller then falls back to the image crate. Corrupt entropy data also returns `Err`, whereas
//! libjpeg would decode it with a warning. Interblock smoothing of incomplete progressive scans
//! (`do_block_smoothing`) is not reproduced: it only applies to files whose last scans are missing.
//!
//! Entropy data that ends early is read as libjpeg reads it: the read that runs out gets zeros,
//! and the rest of the scan (up to a restart marker) leaves its blocks unchanged
//! (`insufficient_data`), so an empty scan costs nothing. Markers are found as libjpeg's
//! `next_marker` finds them (`FF 00` is skipped, never read as a segment), by both `probe` and
//! `decode`.
//!
//! Damaged segments are read as libjpeg and PIL read them (`tests/reference/make_damaged_jpegs.py`):
//! libjpeg trusts a segment's length and skips that many bytes, then `next_marker` skips whatever
//! junk follows to the next marker; an APPn or COM length below 2 reads as an empty segment (the
//! bytes after the length field are then junk); a DNL segment is skipped. `probe` refuses what PIL
//! refuses: marker codes libjpeg or PIL's header parser does not know (`refused_marker`), a second
//! SOI, an EOI before any scan, and the header checks of Pillow's `JpegImagePlugin` that fail on
//! short `JFIF`, `Adobe` and ICC segments (`pil_header_check`). The EXIF orientation is read from the
//! Exif segments before the first scan as Pillow reads it (`pil_exif_orientation`). At most
//! `MAX_JPEG_SCANS` scans, reading each coefficient at most
//! `MAX_JPEG_COEFFICIENT_PASSES` times in all (`crate::limits`), are walked.

use crate::limits::{MAX_JPEG_COEFFICIENT_PASSES, MAX_JPEG_SCANS};

/// What the pixels are: L, RGB, or CMYK in Pillow's polarity (`CMYK;I`: 0 = no ink).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Model {
    Gray,
    Rgb,
    Cmyk,
}

pub(super) struct Image {
    pub width: u32,
    pub height: u32,
    pub model: Model,
    /// Interleaved samples, 1, 3 or 4 per pixel.
    pub data: Vec<u8>,
}

const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63,
];

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Quantisation table (natural order), latched at the component's first scan like libjpeg.
    quant: Option<[u16; 64]>,
    /// Allocated block grid (covers the interleaved MCU padding).
    bw: usize,
    bh: usize,
    /// Blocks that hold image data, and the component's own sample size.
    width_in_blocks: usize,
    height_in_blocks: usize,
    ds_w: usize,
    ds_h: usize,
    coefs: Vec<i16>,
}

#[derive(Clone)]
struct Huffman {
    /// For codes of up to 9 bits: (length << 8) | value, indexed by the next 9 bits; 0 = longer code.
    lookup: Vec<u16>,
    maxcode: [i32; 18],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

const LOOKAHEAD: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self, String> {
        let mut t =
            Huffman { lookup: vec![0; 1 << LOOKAHEAD], maxcode: [-1; 18], valptr: [0; 17], mincode: [0; 17], values };
        let (mut code, mut k) = (0u32, 0usize);
        for l in 1..=16usize {
            let n = counts[l - 1] as usize;
            t.valptr[l] = k as i32;
            t.mincode[l] = code as i32;
            for _ in 0..n {
                if k >= t.values.len() || code >= (1u32 << l) {
                    return Err("bad Huffman table".into());
                }
                if l as u32 <= LOOKAHEAD {
                    let shift = LOOKAHEAD - l as u32;
                    for fill in 0..(1u32 << shift) {
                        t.lookup[((code << shift) | fill) as usize] = ((l as u16) << 8) | t.values[k] as u16;
                    }
                }
                code += 1;
                k += 1;
            }
            t.maxcode[l] = if n > 0 { code as i32 - 1 } else { -1 };
            code <<= 1;
        }
        t.maxcode[17] = i32::MAX;
        Ok(t)
    }
}

/// Entropy-coded segment reader: unstuffs 0xFF00 and feeds zeros once a marker is reached (as
/// libjpeg does).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    nbits: u32,
    at_marker: bool,
    /// Zero bits at the bottom of `acc` that were fed after the data ended (at a marker).
    pad: u32,
    /// A read used those zeros: libjpeg's `insufficient_data`, after which the rest of the scan
    /// (up to the next restart marker) leaves its blocks unchanged.
    insufficient: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits { data, pos, acc: 0, nbits: 0, at_marker: false, pad: 0, insufficient: false }
    }

    /// After a read: did it reach into the zeros fed past the end of the data?
    #[inline]
    fn consumed(&mut self) {
        if self.nbits < self.pad {
            self.insufficient = true;
            self.pad = self.nbits;
        }
    }

    /// Nothing more can be read in this scan: the data ran out and no restart marker follows.
    fn exhausted(&self, restart_interval: usize) -> bool {
        if !self.insufficient {
            return false;
        }
        let p = self.end();
        restart_interval == 0 || !matches!(self.data.get(p + 1), Some(0xD0..=0xD7))
    }

    fn fill(&mut self) {
        while self.nbits <= 56 {
            let mut byte = 0u8;
            if self.at_marker || self.pos >= self.data.len() {
                self.pad += 8;
            } else {
                let b = self.data[self.pos];
                if b == 0xFF {
                    match self.data.get(self.pos + 1) {
                        Some(0) => {
                            self.pos += 2;
                            byte = 0xFF;
                        }
                        _ => {
                            self.at_marker = true;
                            self.pad += 8;
                        }
                    }
                } else {
                    self.pos += 1;
                    byte = b;
                }
            }
            self.acc |= (byte as u64) << (56 - self.nbits);
            self.nbits += 8;
        }
    }

    fn bits(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if self.nbits < n {
            self.fill();
        }
        let v = (self.acc >> (64 - n)) as u32;
        self.acc <<= n;
        self.nbits -= n;
        self.consumed();
        v
    }

    fn bit(&mut self) -> bool {
        self.bits(1) == 1
    }

    fn huff(&mut self, t: &Huffman) -> Result<u8, String> {
        if self.nbits < 16 {
            self.fill();
        }
        let e = t.lookup[(self.acc >> (64 - LOOKAHEAD)) as usize];
        if e != 0 {
            let len = (e >> 8) as u32;
            self.acc <<= len;
            self.nbits -= len;
            self.consumed();
            return Ok(e as u8);
        }
        for l in (LOOKAHEAD as usize + 1)..=16 {
            let code = (self.acc >> (64 - l)) as i32;
            if code <= t.maxcode[l] {
                self.acc <<= l;
                self.nbits -= l as u32;
                self.consumed();
                let idx = (t.valptr[l] + code - t.mincode[l]) as usize;
                return t.values.get(idx).copied().ok_or_else(|| "bad Huffman code".to_string());
            }
        }
        Err("bad Huffman code".into())
    }

    /// Receive `s` bits and sign-extend (JPEG EXTEND).
    fn receive_extend(&mut self, s: u8) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.bits(s as u32) as i32;
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// At a restart interval: drop buffered bits and skip the RSTn marker.
    fn restart(&mut self) {
        self.acc = 0;
        self.nbits = 0;
        self.pad = 0;
        self.at_marker = false;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && self.data[self.pos + 1] != 0 && self.data[self.pos + 1] != 0xFF {
                if (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                    self.pos += 2;
                    // jdhuff/jdphuff `process_restart`: a found RSTn clears the out-of-data state.
                    self.insufficient = false;
                }
                return;
            }
            self.pos += 1;
        }
    }

    /// Position of the marker that ends this entropy-coded segment.
    fn end(&self) -> usize {
        let mut p = self.pos;
        while p + 1 < self.data.len() && !(self.data[p] == 0xFF && self.data[p + 1] != 0 && self.data[p + 1] != 0xFF) {
            p += 1;
        }
        p
    }
}

struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    comps: Vec<Component>,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
}

struct Scan {
    comps: Vec<(usize, usize, usize)>, // (component index, DC table, AC table)
    ss: usize,
    se: usize,
    ah: u8,
    al: u8,
}

fn be16(d: &[u8], at: usize) -> Result<usize, String> {
    d.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]) as usize).ok_or_else(|| "unexpected end of data".into())
}

pub(super) struct Header {
    pub width: u32,
    pub height: u32,
    /// The EXIF orientation PIL's `ImageOps.exif_transpose` acts on (2..=8), read as Pillow reads it
    /// (`pil_exif_orientation`); `None` when PIL finds none or one it ignores.
    pub orientation: Option<u8>,
}

/// Why `decode` gave no image.
#[derive(Debug)]
pub(super) enum DecodeError {
    /// A variant or corruption this decoder does not handle: another decoder may try.
    Declined(String),
    /// An input limit (`crate::limits`): no decoder may try.
    Limit(String),
}

impl From<String> for DecodeError {
    fn from(m: String) -> Self {
        DecodeError::Declined(m)
    }
}

impl From<&str> for DecodeError {
    fn from(m: &str) -> Self {
        DecodeError::Declined(m.to_string())
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Declined(m) | DecodeError::Limit(m) => f.write_str(m),
        }
    }
}

/// libjpeg's `next_marker`: from `pos`, skips bytes up to an 0xFF, the fill 0xFFs after it, and
/// `FF 00` pairs (stuffed zeros, never a marker), then returns the marker code and the position
/// after it. The probe and the decoder both read markers through this, so they see the same frame.
fn next_marker(b: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    loop {
        while *b.get(pos)? != 0xFF {
            pos += 1;
        }
        while *b.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *b.get(pos)?;
        pos += 1;
        if marker != 0 {
            return Some((marker, pos));
        }
    }
}

/// APP0..APP15 and COM: the segments libjpeg skips by their length (APP0 and APP14 after a look).
fn is_app_or_com(marker: u8) -> bool {
    matches!(marker, 0xE0..=0xEF | 0xFE)
}

/// Marker codes that end decoding: PIL's own header parser knows no code below 0xC0 ("no marker
/// found"; `0x01` TEM is refused by `probe` before the first scan only), and libjpeg's `read_markers` stops with `JERR_UNKNOWN_MARKER` on
/// JPG (`C8`), DHP, EXP and JPG0..JPG13 (`F0`..`FD`), wherever they appear.
fn refused_marker(marker: u8) -> Option<String> {
    match marker {
        0x02..=0xBF | 0xC8 | 0xDE | 0xDF | 0xF0..=0xFD => Some(format!("unknown JPEG marker 0x{marker:02X}")),
        _ => None,
    }
}

/// The header checks of PIL's `JpegImagePlugin` (run before the first scan) that refuse a file
/// libjpeg would decode: a `JFIF` APP0 or `Adobe` APP14 too short for `i16(s, 5)`, and, at the frame
/// header, ICC APP2 segments whose first (sorted) one is too short for its count byte (`s[13]`).
fn pil_header_check<'a>(marker: u8, seg: &'a [u8], icc: &mut Vec<&'a [u8]>) -> Result<(), String> {
    match marker {
        0xE0 if seg.starts_with(b"JFIF") && seg.len() < 7 => Err("APP0 JFIF segment too short".into()),
        0xEE if seg.starts_with(b"Adobe") && seg.len() < 7 => Err("APP14 Adobe segment too short".into()),
        0xE2 if seg.starts_with(b"ICC_PROFILE\0") => {
            icc.push(seg);
            Ok(())
        }
        m if is_sof(m) => {
            let short = icc.iter().min().is_some_and(|first| first.len() < 14);
            icc.clear();
            if short {
                Err("APP2 ICC profile segment too short".into())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The orientation `PIL.ImageOps.exif_transpose` applies, from the TIFF block Pillow assembles out of
/// a JPEG's Exif APP1 segments (`Image.Exif.load`, `TiffImagePlugin.ImageFileDirectory_v2.load` of
/// Pillow 13): IFD0 only. Per entry, as Pillow: a tag already stored is skipped; a type Pillow does
/// not know is skipped; a value longer than 4 bytes counts towards a running total of out-of-line
/// bytes and is skipped once that total passes the block's length, else read at its offset, and one
/// that runs out of the block ends the IFD (an OSError, as a truncated entry list), keeping what was
/// stored before; an empty value (count 0) is skipped. The orientation is the first value of the
/// stored 0x0112 entry (a tag of length 1): SHORT, LONG, SBYTE, SSHORT, SLONG, LONG8, IFD, FLOAT,
/// DOUBLE, RATIONAL and SRATIONAL values that equal 2..=8 apply; BYTE, ASCII and UNDEFINED values
/// are bytes or text and never do. A header shorter than 8 bytes or without `II*\0`/`MM\0*` is no
/// EXIF (Pillow's parse fails and `exif_transpose` finds no orientation).
pub(super) fn pil_exif_orientation(t: &[u8]) -> Option<u8> {
    let le = match t.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let bytes = |at: usize, n: usize| -> Option<u64> {
        let b = t.get(at..at.checked_add(n)?)?;
        let fold = |acc: u64, &x: &u8| acc << 8 | x as u64;
        Some(if le { b.iter().rev().fold(0, fold) } else { b.iter().fold(0, fold) })
    };
    let ifd = bytes(4, 4)? as usize;
    let count = bytes(ifd, 2)? as usize;
    // Tags already stored (a bit set: up to 65535 entries, each checked once).
    let (mut stored, mut total) = (vec![0u64; 1024], 0u64);
    for i in 0..count {
        let e = ifd + 2 + 12 * i;
        let (tag, typ, n) = (bytes(e, 2)? as u16, bytes(e + 2, 2)?, bytes(e + 4, 4)?);
        let (word, bit) = (tag as usize / 64, 1u64 << (tag % 64));
        if stored[word] & bit != 0 {
            continue;
        }
        let unit = match typ {
            1 | 2 | 6 | 7 => 1u64,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 => 8,
            _ => continue,
        };
        let size = unit * n;
        let at = if size > 4 {
            total += size;
            if total > t.len() as u64 {
                continue;
            }
            let at = bytes(e + 8, 4)?;
            if at + size > t.len() as u64 {
                return None; // _safe_read raises: the IFD ends here
            }
            at as usize
        } else {
            e + 8
        };
        if size == 0 {
            continue;
        }
        stored[word] |= bit;
        if tag != 0x0112 {
            continue;
        }
        let v: f64 = match typ {
            3 | 4 | 13 | 16 => bytes(at, unit as usize)? as f64,
            6 => bytes(at, 1)? as i8 as f64,
            8 => bytes(at, 2)? as i16 as f64,
            9 => bytes(at, 4)? as i32 as f64,
            11 => f32::from_bits(bytes(at, 4)? as u32) as f64,
            12 => f64::from_bits(bytes(at, 8)?),
            5 | 10 => {
                let (num, den) = (bytes(at, 4)? as u32, bytes(at + 4, 4)? as u32);
                let (num, den) =
                    if typ == 10 { (num as i32 as f64, den as i32 as f64) } else { (num as f64, den as f64) };
                // IFDRational compares as the exact fraction (NaN when the denominator is 0).
                if den == 0.0 || num % den != 0.0 {
                    return None;
                }
                num / den
            }
            _ => return None, // BYTE, ASCII, UNDEFINED
        };
        return (2.0..=8.0).contains(&v).then_some(v as u8).filter(|&o| o as f64 == v);
    }
    None
}

/// Start-of-frame markers (all processes): SOF0..SOF15 except DHT, JPG and DAC.
fn is_sof(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

fn scan_limit_error() -> String {
    format!("more than {MAX_JPEG_SCANS} scans")
}

fn passes_limit_error() -> String {
    format!("its scans read each DCT coefficient more than {MAX_JPEG_COEFFICIENT_PASSES} times")
}

/// The block geometry of a frame header, as far as the probe needs it to bound the scans' work.
struct Shape {
    /// (component id, h, v)
    comps: Vec<(u8, u64, u64)>,
    mcus_x: u64,
    mcus_y: u64,
    width: u64,
    height: u64,
    max_h: u64,
    max_v: u64,
}

impl Shape {
    fn parse(seg: &[u8]) -> Result<Shape, String> {
        let (height, width) = (be16(seg, 1)? as u64, be16(seg, 3)? as u64);
        let n = *seg.get(5).ok_or("short frame header")? as usize;
        let mut comps = Vec::with_capacity(n);
        for i in 0..n {
            let c = seg.get(6 + 3 * i..9 + 3 * i).ok_or("short frame header")?;
            let (h, v) = ((c[1] >> 4) as u64, (c[1] & 15) as u64);
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) {
                return Err("bad sampling factors".into());
            }
            comps.push((c[0], h, v));
        }
        let max_h = comps.iter().map(|c| c.1).max().unwrap_or(1);
        let max_v = comps.iter().map(|c| c.2).max().unwrap_or(1);
        let (mcus_x, mcus_y) = (width.div_ceil(8 * max_h), height.div_ceil(8 * max_v));
        Ok(Shape { comps, mcus_x, mcus_y, width, height, max_h, max_v })
    }

    /// Coefficients the frame holds (the allocated block grids).
    fn coefficients(&self) -> u64 {
        self.comps.iter().map(|&(_, h, v)| self.mcus_x * h * self.mcus_y * v * 64).sum()
    }

    /// Coefficient reads a scan header asks for: blocks walked times the spectral band.
    fn scan_reads(&self, sos: &[u8]) -> Option<u64> {
        let ns = *sos.first()? as usize;
        let p = 1 + 2 * ns;
        let (ss, se) = (*sos.get(p)? as u64, *sos.get(p + 1)? as u64);
        let band = se.saturating_sub(ss) + 1;
        let mut blocks = 0u64;
        for i in 0..ns {
            let id = *sos.get(1 + 2 * i)?;
            let &(_, h, v) = self.comps.iter().find(|c| c.0 == id)?;
            blocks += if ns == 1 {
                (self.width * h).div_ceil(self.max_h).div_ceil(8) * (self.height * v).div_ceil(self.max_v).div_ceil(8)
            } else {
                h * v * self.mcus_x * self.mcus_y
            };
        }
        Some(blocks * band)
    }
}

/// Reads the frame size and EXIF block, and checks that the file is complete: zune-jpeg (and, with
/// a warning, libjpeg) decode a truncated scan as grey, but PIL refuses such files. Markers are
/// found as libjpeg finds them (`next_marker`); a second frame header and more than
/// `MAX_JPEG_SCANS` scans are refused (libjpeg refuses the first; the hardened libjpeg-turbo the
/// second), so whichever decoder runs next decodes the frame whose size was checked.
pub(super) fn probe(b: &[u8]) -> Result<Header, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("no start-of-image marker".into());
    }
    let (mut size, mut exif, mut scans) = (None, None::<Vec<u8>>, 0usize);
    let mut icc: Vec<&[u8]> = Vec::new();
    let (mut shape, mut reads) = (None::<Shape>, 0u64);
    let mut pos = 2; // after SOI
    while let Some((marker, at)) = next_marker(b, pos) {
        pos = at;
        match marker {
            0xD9 => {
                let (height, width) = size.ok_or("no frame header before the end-of-image marker")?;
                if scans == 0 {
                    // libjpeg's JERR_SOF_NO_SOS (say, an EOI inside the junk a bad length uncovers).
                    return Err("no scan before the end-of-image marker".into());
                }
                if width == 0 || height == 0 {
                    return Err("zero image width or height".into());
                }
                let orientation = exif.as_deref().and_then(pil_exif_orientation);
                return Ok(Header { width, height, orientation });
            }
            // TEM: no length to libjpeg, but an unknown marker to PIL's header parser (before a scan).
            0x01 if scans == 0 => return Err("unknown JPEG marker 0x01 before the first scan".into()),
            // A second SOI is libjpeg's JERR_SOI_DUPLICATE.
            0xD8 => return Err("a second start-of-image marker".into()),
            0x01 | 0xD0..=0xD7 => continue, // no length; RSTn inside entropy-coded data
            _ => {}
        }
        if let Some(m) = refused_marker(marker) {
            return Err(m);
        }
        let len = be16(b, pos)?;
        // APPn and COM: libjpeg (`skip_variable`, `get_interesting_appn`) and PIL (`_safe_read` of a
        // negative size) both read a length below 2 as an empty segment and go on after the length
        // field. Any other segment with such a length is an error to libjpeg.
        let len = if len < 2 && is_app_or_com(marker) { 2 } else { len };
        if len < 2 {
            return Err(format!("bad JPEG segment length at byte {pos}"));
        }
        let seg = b.get(pos + 2..pos + len).ok_or("the file ends inside a segment")?;
        if scans == 0 {
            pil_header_check(marker, seg, &mut icc)?;
        }
        match marker {
            m if is_sof(m) => {
                if size.is_some() {
                    return Err("more than one frame header".into());
                }
                size = Some((be16(seg, 1)? as u32, be16(seg, 3)? as u32));
                shape = Some(Shape::parse(seg)?);
            }
            // Pillow keeps the first Exif segment whole and appends the TIFF data of later ones.
            0xE1 if seg.starts_with(b"Exif\0\0") && scans == 0 => {
                exif.get_or_insert_with(Vec::new).extend_from_slice(&seg[6..])
            }
            0xDA => {
                scans += 1;
                if scans > MAX_JPEG_SCANS {
                    return Err(scan_limit_error());
                }
                // The same bound as the decoder's, so that no decoder walks a scan bomb.
                if let Some(shape) = &shape {
                    reads = reads.saturating_add(shape.scan_reads(seg).unwrap_or(0));
                    if reads > shape.coefficients().saturating_mul(MAX_JPEG_COEFFICIENT_PASSES) {
                        return Err(passes_limit_error());
                    }
                }
            }
            _ => {}
        }
        // After a scan header, next_marker skips the entropy-coded data (stuffed FF 00 included).
        pos += len;
    }
    Err(if size.is_some() {
        "the file ends before the end-of-image marker".into()
    } else {
        "the file ends before the frame header".into()
    })
}

pub(super) fn decode(data: &[u8], max_alloc: u64) -> Result<Image, DecodeError> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err("not a JPEG".into());
    }
    let mut pos = 2;
    let mut qt: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = [None, None, None, None];
    let mut ac: [Option<Huffman>; 4] = [None, None, None, None];
    let mut restart_interval = 0usize;
    let mut frame: Option<Frame> = None;
    let (mut jfif, mut adobe): (bool, Option<u8>) = (false, None);
    let (mut scans, mut work) = (0usize, 0u64);

    // Markers as libjpeg's next_marker finds them (fill bytes, junk and FF 00 skipped).
    while let Some((marker, at)) = next_marker(data, pos) {
        pos = at;
        match marker {
            0xD9 => break,
            0xD0..=0xD8 | 0x01 => continue,
            _ => {}
        }
        let len = be16(data, pos)?;
        let len = if len < 2 && is_app_or_com(marker) { 2 } else { len };
        let seg = data.get(pos + 2..pos + len).ok_or("segment runs past the end of data")?;
        match marker {
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Err("more than one frame".into());
                }
                frame = Some(parse_frame(seg, marker == 0xC2, max_alloc)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(format!("unsupported JPEG process (SOF{})", marker - 0xC0).into());
            }
            0xDB => parse_dqt(seg, &mut qt)?,
            0xC4 => parse_dht(seg, &mut dc, &mut ac)?,
            0xDD => restart_interval = be16(seg, 0)?,
            0xE0 if seg.len() >= 14 && seg.starts_with(b"JFIF\0") => jfif = true,
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => adobe = Some(seg[11]),
            // DNL: libjpeg's read_markers skips it (`skip_variable`); a frame height of 0 that
            // would need it is declined by parse_frame.
            0xDC => {}
            0xDA => {
                let f = frame.as_mut().ok_or("scan before frame header")?;
                scans += 1;
                if scans > MAX_JPEG_SCANS {
                    return Err(DecodeError::Limit(scan_limit_error()));
                }
                let scan = parse_sos(seg, f)?;
                // Coefficient reads this scan may make; all scans together may read each
                // coefficient of the frame at most MAX_JPEG_COEFFICIENT_PASSES times.
                let blocks: u64 = if scan.comps.len() == 1 {
                    let c = &f.comps[scan.comps[0].0];
                    (c.width_in_blocks * c.height_in_blocks) as u64
                } else {
                    scan.comps.iter().map(|&(ci, _, _)| (f.comps[ci].h * f.comps[ci].v) as u64).sum::<u64>()
                        * (f.mcus_x * f.mcus_y) as u64
                };
                work += blocks * (scan.se - scan.ss + 1) as u64;
                let frame_coefs: u64 = f.comps.iter().map(|c| (c.bw * c.bh) as u64 * 64).sum();
                if work > frame_coefs.saturating_mul(MAX_JPEG_COEFFICIENT_PASSES) {
                    return Err(DecodeError::Limit(passes_limit_error()));
                }
                for &(ci, _, _) in &scan.comps {
                    let c = &mut f.comps[ci];
                    if c.quant.is_none() {
                        c.quant = Some(qt[c.tq].ok_or("missing quantisation table")?);
                    }
                }
                let mut bits = Bits::new(data, pos + len);
                decode_scan(f, &scan, &dc, &ac, restart_interval, &mut bits)?;
                pos = bits.end();
                continue;
            }
            _ => {}
        }
        pos += len;
    }

    let f = frame.ok_or("no frame header")?;
    if f.comps.iter().any(|c| c.quant.is_none()) {
        return Err("a component has no scan".into());
    }
    Ok(output(f, jfif, adobe)?)
}

fn parse_frame(seg: &[u8], progressive: bool, max_alloc: u64) -> Result<Frame, DecodeError> {
    if seg.len() < 6 || seg[0] != 8 {
        return Err(format!("unsupported sample precision {}", seg.first().copied().unwrap_or(0)).into());
    }
    let (height, width, n) = (be16(seg, 1)?, be16(seg, 3)?, seg[5] as usize);
    if height == 0 || width == 0 {
        return Err("zero image height (DNL) or width".into());
    }
    if !matches!(n, 1 | 3 | 4) || seg.len() < 6 + 3 * n {
        return Err(format!("unsupported component count {n}").into());
    }
    let mut comps = Vec::with_capacity(n);
    for i in 0..n {
        let b = &seg[6 + 3 * i..9 + 3 * i];
        let (h, v) = ((b[1] >> 4) as usize, (b[1] & 15) as usize);
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || b[2] > 3 {
            return Err("bad sampling factors or table index".into());
        }
        comps.push(Component {
            id: b[0],
            h,
            v,
            tq: b[2] as usize,
            quant: None,
            bw: 0,
            bh: 0,
            width_in_blocks: 0,
            height_in_blocks: 0,
            ds_w: 0,
            ds_h: 0,
            coefs: Vec::new(),
        });
    }
    let max_h = comps.iter().map(|c| c.h).max().unwrap_or(1);
    let max_v = comps.iter().map(|c| c.v).max().unwrap_or(1);
    let mcus_x = width.div_ceil(8 * max_h);
    let mcus_y = height.div_ceil(8 * max_v);
    // The interleaved output; then per component: coefficients (2 bytes each), IDCT and upsampled
    // planes. In u64: 65535 x 65535 overflows a 32-bit usize.
    let pixels = width as u64 * height as u64;
    let mut total: u64 = pixels * n as u64;
    for c in &mut comps {
        c.ds_w = (width * c.h).div_ceil(max_h);
        c.ds_h = (height * c.v).div_ceil(max_v);
        c.width_in_blocks = c.ds_w.div_ceil(8);
        c.height_in_blocks = c.ds_h.div_ceil(8);
        c.bw = mcus_x * c.h;
        c.bh = mcus_y * c.v;
        // coefficients (2 bytes) + IDCT plane + upsampled plane
        total += c.bw as u64 * c.bh as u64 * 64 * 3 + pixels;
    }
    if total > max_alloc || usize::try_from(total).is_err() {
        // Declined, not a limit: the image crate's decoder needs less memory for the same frame
        // (the pixel cap, already checked, is the limit).
        return Err(format!("needs {total} bytes, above the {max_alloc}-byte limit").into());
    }
    for c in &mut comps {
        c.coefs = vec![0; c.bw * c.bh * 64];
    }
    Ok(Frame { width, height, progressive, comps, max_h, max_v, mcus_x, mcus_y })
}

fn parse_dqt(mut seg: &[u8], qt: &mut [Option<[u16; 64]>; 4]) -> Result<(), String> {
    while !seg.is_empty() {
        let (pq, tq) = (seg[0] >> 4, (seg[0] & 15) as usize);
        let size = if pq == 0 { 64 } else { 128 };
        if tq > 3 || seg.len() < 1 + size {
            return Err("bad quantisation table".into());
        }
        let mut t = [0u16; 64];
        for (k, &z) in ZIGZAG.iter().enumerate() {
            t[z] = if pq == 0 { seg[1 + k] as u16 } else { u16::from_be_bytes([seg[1 + 2 * k], seg[2 + 2 * k]]) };
        }
        qt[tq] = Some(t);
        seg = &seg[1 + size..];
    }
    Ok(())
}

fn parse_dht(mut seg: &[u8], dc: &mut [Option<Huffman>; 4], ac: &mut [Option<Huffman>; 4]) -> Result<(), String> {
    while !seg.is_empty() {
        if seg.len() < 17 {
            return Err("bad Huffman table".into());
        }
        let (class, th) = (seg[0] >> 4, (seg[0] & 15) as usize);
        let counts: [u8; 16] = seg[1..17].try_into().map_err(|_| "bad Huffman table")?;
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        if th > 3 || class > 1 || seg.len() < 17 + n || n > 256 {
            return Err("bad Huffman table".into());
        }
        let table = Huffman::new(&counts, seg[17..17 + n].to_vec())?;
        if class == 0 {
            dc[th] = Some(table)
        } else {
            ac[th] = Some(table)
        }
        seg = &seg[17 + n..];
    }
    Ok(())
}

fn parse_sos(seg: &[u8], f: &Frame) -> Result<Scan, String> {
    let ns = *seg.first().ok_or("bad scan header")? as usize;
    if ns == 0 || ns > 4 || seg.len() < 4 + 2 * ns {
        return Err("bad scan header".into());
    }
    let mut comps = Vec::with_capacity(ns);
    for i in 0..ns {
        let (id, t) = (seg[1 + 2 * i], seg[2 + 2 * i]);
        let ci = f.comps.iter().position(|c| c.id == id).ok_or("scan names an unknown component")?;
        let (td, ta) = ((t >> 4) as usize, (t & 15) as usize);
        if td > 3 || ta > 3 {
            return Err("bad Huffman table index".into());
        }
        comps.push((ci, td, ta));
    }
    let p = 1 + 2 * ns;
    let (ss, se, ah, al) = (seg[p] as usize, seg[p + 1] as usize, seg[p + 2] >> 4, seg[p + 2] & 15);
    if f.progressive {
        let dc_scan = ss == 0;
        if se > 63 || ss > se || (dc_scan && se != 0) || (!dc_scan && ns != 1) || al > 13 || ah > 13 {
            return Err("bad progressive scan parameters".into());
        }
    } else if ss != 0 || se != 63 || ah != 0 || al != 0 {
        return Err("bad sequential scan parameters".into());
    }
    Ok(Scan { comps, ss, se, ah, al })
}

fn decode_scan(
    f: &mut Frame,
    scan: &Scan,
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart_interval: usize,
    bits: &mut Bits,
) -> Result<(), String> {
    let need_dc = scan.ss == 0 && scan.ah == 0;
    let need_ac = scan.se > 0;
    for &(_, td, ta) in &scan.comps {
        if (need_dc && dc[td].is_none()) || (need_ac && ac[ta].is_none()) {
            return Err("missing Huffman table".into());
        }
    }
    let mut preds = [0i32; 4];
    let mut eobrun = 0u32;
    // Blocks in MCU order: interleaved scans walk MCUs, single-component scans walk the component's blocks.
    let (units_x, units_y) = if scan.comps.len() == 1 {
        let c = &f.comps[scan.comps[0].0];
        (c.width_in_blocks, c.height_in_blocks)
    } else {
        (f.mcus_x, f.mcus_y)
    };
    let mut count = 0usize;
    for uy in 0..units_y {
        for ux in 0..units_x {
            if restart_interval > 0 && count > 0 && count.is_multiple_of(restart_interval) {
                bits.restart();
                preds = [0; 4];
                eobrun = 0;
            }
            count += 1;
            if bits.insufficient {
                // libjpeg leaves the rest of the scan (up to a restart marker) unchanged; without
                // one to come, stop walking: an empty scan costs nothing.
                if bits.exhausted(restart_interval) {
                    return Ok(());
                }
                continue;
            }
            for (si, &(ci, td, ta)) in scan.comps.iter().enumerate() {
                let comp = &mut f.comps[ci];
                let (bh_n, bv_n) = if scan.comps.len() == 1 { (1, 1) } else { (comp.h, comp.v) };
                for by in 0..bv_n {
                    for bx in 0..bh_n {
                        let (row, col) = (uy * bv_n + by, ux * bh_n + bx);
                        let off = (row * comp.bw + col) * 64;
                        let block: &mut [i16; 64] = comp
                            .coefs
                            .get_mut(off..off + 64)
                            .and_then(|b| b.try_into().ok())
                            .ok_or("block out of range")?;
                        if !f.progressive {
                            decode_baseline(
                                bits,
                                block,
                                dc[td].as_ref().unwrap(),
                                ac[ta].as_ref().unwrap(),
                                &mut preds[si],
                            )?;
                        } else if scan.ss == 0 {
                            if scan.ah == 0 {
                                let s = bits.huff(dc[td].as_ref().unwrap())?;
                                if s > 16 {
                                    return Err("bad DC coefficient".into());
                                }
                                preds[si] = preds[si].wrapping_add(bits.receive_extend(s));
                                block[0] = preds[si].wrapping_shl(scan.al as u32) as i16;
                            } else if bits.bit() {
                                block[0] |= 1 << scan.al;
                            }
                        } else if scan.ah == 0 {
                            decode_ac_first(bits, block, ac[ta].as_ref().unwrap(), scan, &mut eobrun)?;
                        } else {
                            decode_ac_refine(bits, block, ac[ta].as_ref().unwrap(), scan, &mut eobrun)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn decode_baseline(
    bits: &mut Bits,
    block: &mut [i16; 64],
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
) -> Result<(), String> {
    let s = bits.huff(dc)?;
    if s > 16 {
        return Err("bad DC coefficient".into());
    }
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = *pred as i16;
    let mut k = 1;
    while k < 64 {
        let rs = bits.huff(ac)?;
        let (r, s) = ((rs >> 4) as usize, rs & 15);
        if s != 0 {
            k += r;
            let v = bits.receive_extend(s);
            if k > 63 {
                return Err("AC coefficient index past 63".into());
            }
            block[ZIGZAG[k]] = v as i16;
            k += 1;
        } else if r == 15 {
            k += 16;
        } else {
            break;
        }
    }
    Ok(())
}

fn decode_ac_first(
    bits: &mut Bits,
    block: &mut [i16; 64],
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
) -> Result<(), String> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = bits.huff(ac)?;
        let (r, s) = ((rs >> 4) as usize, rs & 15);
        if s != 0 {
            k += r;
            let v = bits.receive_extend(s);
            if k > 63 {
                return Err("AC coefficient index past 63".into());
            }
            block[ZIGZAG[k]] = (v * (1 << scan.al)) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            *eobrun = (1 << r) - 1;
            if r > 0 {
                *eobrun += bits.bits(r as u32);
            }
            break;
        }
        k += 1;
    }
    Ok(())
}

/// Successive-approximation refinement of AC coefficients (libjpeg `decode_mcu_AC_refine`).
fn decode_ac_refine(
    bits: &mut Bits,
    block: &mut [i16; 64],
    ac: &Huffman,
    scan: &Scan,
    eobrun: &mut u32,
) -> Result<(), String> {
    let p1: i16 = 1 << scan.al;
    let m1: i16 = -p1;
    let mut k = scan.ss;
    let refine = |bits: &mut Bits, coef: &mut i16| {
        if bits.bit() && (*coef & p1) == 0 {
            *coef = coef.wrapping_add(if *coef >= 0 { p1 } else { m1 });
        }
    };
    if *eobrun == 0 {
        while k <= scan.se {
            let rs = bits.huff(ac)?;
            let (mut r, s) = ((rs >> 4) as i32, rs & 15);
            let mut value = 0i16;
            if s != 0 {
                value = if bits.bit() { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = 1 << r;
                if r > 0 {
                    *eobrun += bits.bits(r as u32);
                }
                break;
            }
            while k <= scan.se {
                let z = ZIGZAG[k];
                if block[z] != 0 {
                    refine(bits, &mut block[z]);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                if k > 63 {
                    return Err("AC coefficient index past 63".into());
                }
                block[ZIGZAG[k]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= scan.se {
            let z = ZIGZAG[k];
            if block[z] != 0 {
                refine(bits, &mut block[z]);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output: IDCT, upsampling, colour conversion.

/// libjpeg's IDCT range limit: the value is taken modulo 1024 (as a signed offset), then clamped.
#[inline]
fn idct_limit(v: i32) -> u8 {
    let w = ((v + 512) & 1023) - 512;
    (w + 128).clamp(0, 255) as u8
}

/// `jpeg_idct_islow` (CONST_BITS 13, PASS1_BITS 2).
fn idct_islow(coef: &[i16], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: i32 = 13;
    const PASS1_BITS: i32 = 2;
    const F_0_298: i64 = 2446;
    const F_0_390: i64 = 3196;
    const F_0_541: i64 = 4433;
    const F_0_765: i64 = 6270;
    const F_0_899: i64 = 7373;
    const F_1_175: i64 = 9633;
    const F_1_501: i64 = 12299;
    const F_1_847: i64 = 15137;
    const F_1_961: i64 = 16069;
    const F_2_053: i64 = 16819;
    const F_2_562: i64 = 20995;
    const F_3_072: i64 = 25172;
    let descale = |x: i64, n: i32| (x + (1i64 << (n - 1))) >> n;
    let mut ws = [0i32; 64];

    // The even/odd butterfly shared by both passes; returns the 8 unscaled outputs.
    let butterfly = |i: [i64; 8]| -> [i64; 8] {
        let (z2, z3) = (i[2], i[6]);
        let z1 = (z2 + z3) * F_0_541;
        let tmp2 = z1 + z3 * -F_1_847;
        let tmp3 = z1 + z2 * F_0_765;
        let (tmp0, tmp1) = ((i[0] + i[4]) << CONST_BITS, (i[0] - i[4]) << CONST_BITS);
        let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (mut t0, mut t1, mut t2, mut t3) = (i[7], i[5], i[3], i[1]);
        let (mut z1, mut z2, mut z3, mut z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
        let z5 = (z3 + z4) * F_1_175;
        t0 *= F_0_298;
        t1 *= F_2_053;
        t2 *= F_3_072;
        t3 *= F_1_501;
        z1 *= -F_0_899;
        z2 *= -F_2_562;
        z3 *= -F_1_961;
        z4 *= -F_0_390;
        z3 += z5;
        z4 += z5;
        t0 += z1 + z3;
        t1 += z2 + z4;
        t2 += z2 + z3;
        t3 += z1 + z4;
        [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
    };

    for c in 0..8 {
        let col: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + c] as i64 * quant[r * 8 + c] as i64);
        if col[1..].iter().all(|&v| v == 0) {
            let dc = (col[0] << PASS1_BITS) as i32;
            for r in 0..8 {
                ws[r * 8 + c] = dc;
            }
            continue;
        }
        let o = butterfly(col);
        for r in 0..8 {
            ws[r * 8 + c] = descale(o[r], CONST_BITS - PASS1_BITS) as i32;
        }
    }
    for r in 0..8 {
        let row: [i64; 8] = std::array::from_fn(|c| ws[r * 8 + c] as i64);
        let dst = &mut out[r * stride..r * stride + 8];
        if row[1..].iter().all(|&v| v == 0) {
            dst.fill(idct_limit(descale(row[0], PASS1_BITS + 3) as i32));
            continue;
        }
        let o = butterfly(row);
        for c in 0..8 {
            dst[c] = idct_limit(descale(o[c], CONST_BITS + PASS1_BITS + 3) as i32);
        }
    }
}

/// A component's samples after the IDCT: `width_in_blocks * 8` wide.
struct Plane {
    data: Vec<u8>,
    stride: usize,
}

fn idct_component(c: &Component) -> Plane {
    let stride = c.width_in_blocks * 8;
    let mut data = vec![0u8; stride * c.height_in_blocks * 8];
    let quant = c.quant.as_ref().expect("checked before output");
    for by in 0..c.height_in_blocks {
        for bx in 0..c.width_in_blocks {
            let off = (by * c.bw + bx) * 64;
            idct_islow(&c.coefs[off..off + 64], quant, &mut data[by * 8 * stride + bx * 8..], stride);
        }
    }
    Plane { data, stride }
}

/// Upsample to the full `width`×`height` grid as libjpeg's `jdsample.c` does.
fn upsample(c: &Component, p: &Plane, f: &Frame) -> Result<Vec<u8>, String> {
    let (w, h) = (f.width, f.height);
    let (hx, vx) = (f.max_h / c.h, f.max_v / c.v);
    if !f.max_h.is_multiple_of(c.h) || !f.max_v.is_multiple_of(c.v) {
        return Err("fractional sampling factors".into());
    }
    let mut out = vec![0u8; w * h];
    let row = |y: usize| &p.data[y * p.stride..y * p.stride + p.stride];
    // jdmainct context rows: above the first row is the first row, below the last real row is itself.
    let clamp_row = |y: isize| y.clamp(0, c.ds_h as isize - 1) as usize;
    let fancy_h = hx == 2 && c.ds_w > 2;
    match (hx, vx) {
        (1, 1) => {
            for y in 0..h {
                out[y * w..(y + 1) * w].copy_from_slice(&row(y)[..w]);
            }
        }
        (2, 1) if fancy_h => {
            let mut line = vec![0u8; 2 * c.ds_w];
            for y in 0..h {
                h2v1_fancy(&row(y)[..c.ds_w], &mut line);
                out[y * w..(y + 1) * w].copy_from_slice(&line[..w]);
            }
        }
        (1, 2) => {
            for y in 0..h {
                let (iy, v) = (y / 2, y % 2);
                let near = row(iy);
                let (far, bias) =
                    if v == 0 { (row(clamp_row(iy as isize - 1)), 1) } else { (row(clamp_row(iy as isize + 1)), 2) };
                for x in 0..w {
                    out[y * w + x] = ((near[x] as i32 * 3 + far[x] as i32 + bias) >> 2) as u8;
                }
            }
        }
        (2, 2) if fancy_h => {
            let mut line = vec![0u8; 2 * c.ds_w];
            let mut sums = vec![0i32; c.ds_w];
            for y in 0..h {
                let (iy, v) = (y / 2, y % 2);
                let near = row(iy);
                let far = if v == 0 { row(clamp_row(iy as isize - 1)) } else { row(clamp_row(iy as isize + 1)) };
                for x in 0..c.ds_w {
                    sums[x] = near[x] as i32 * 3 + far[x] as i32;
                }
                h2v2_fancy_row(&sums, &mut line);
                out[y * w..(y + 1) * w].copy_from_slice(&line[..w]);
            }
        }
        _ => {
            // h2v1 / h2v2 without fancy upsampling and every other integral ratio: replication.
            for y in 0..h {
                let src = row(y / vx);
                for x in 0..w {
                    out[y * w + x] = src[x / hx];
                }
            }
        }
    }
    Ok(out)
}

fn h2v1_fancy(input: &[u8], out: &mut [u8]) {
    let n = input.len();
    let px = |i: usize| input[i] as i32;
    out[0] = input[0];
    out[1] = ((px(0) * 3 + px(1) + 2) >> 2) as u8;
    for i in 1..n - 1 {
        let v = px(i) * 3;
        out[2 * i] = ((v + px(i - 1) + 1) >> 2) as u8;
        out[2 * i + 1] = ((v + px(i + 1) + 2) >> 2) as u8;
    }
    out[2 * n - 2] = ((px(n - 1) * 3 + px(n - 2) + 1) >> 2) as u8;
    out[2 * n - 1] = input[n - 1];
}

/// One output row of `h2v2_fancy_upsample`, given the vertical column sums (3 * near + far).
fn h2v2_fancy_row(sums: &[i32], out: &mut [u8]) {
    let n = sums.len();
    out[0] = ((sums[0] * 4 + 8) >> 4) as u8;
    out[1] = ((sums[0] * 3 + sums[1] + 7) >> 4) as u8;
    for i in 1..n - 1 {
        out[2 * i] = ((sums[i] * 3 + sums[i - 1] + 8) >> 4) as u8;
        out[2 * i + 1] = ((sums[i] * 3 + sums[i + 1] + 7) >> 4) as u8;
    }
    out[2 * n - 2] = ((sums[n - 1] * 3 + sums[n - 2] + 8) >> 4) as u8;
    out[2 * n - 1] = ((sums[n - 1] * 4 + 7) >> 4) as u8;
}

/// `build_ycc_rgb_table` (SCALEBITS 16).
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> Self {
        let fix = |x: f64| (x * 65536.0 + 0.5) as i64;
        let mut t = YccTables { cr_r: [0; 256], cb_b: [0; 256], cr_g: [0; 256], cb_g: [0; 256] };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + 32768) >> 16) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + 32768) >> 16) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + 32768;
        }
        t
    }

    #[inline]
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [i32; 3] {
        let (y, cb, cr) = (y as i32, cb as usize, cr as usize);
        [y + self.cr_r[cr], y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32, y + self.cb_b[cb]]
    }
}

fn output(f: Frame, jfif: bool, adobe: Option<u8>) -> Result<Image, String> {
    let planes: Vec<Vec<u8>> = f.comps.iter().map(|c| upsample(c, &idct_component(c), &f)).collect::<Result<_, _>>()?;
    let n = f.width * f.height;
    let clamp = |v: i32| v.clamp(0, 255) as u8;
    let (model, data) = match f.comps.len() {
        1 => (Model::Gray, planes.into_iter().next().unwrap_or_default()),
        3 => {
            let ids: Vec<u8> = f.comps.iter().map(|c| c.id).collect();
            // default_decompress_parms: JFIF -> YCbCr; Adobe transform 0 -> RGB; ids 'R','G','B' -> RGB.
            let is_rgb = !jfif && (adobe == Some(0) || (adobe.is_none() && ids == [b'R', b'G', b'B']));
            let mut out = vec![0u8; n * 3];
            if is_rgb {
                for i in 0..n {
                    out[3 * i..3 * i + 3].copy_from_slice(&[planes[0][i], planes[1][i], planes[2][i]]);
                }
            } else {
                let t = YccTables::new();
                for i in 0..n {
                    let [r, g, b] = t.rgb(planes[0][i], planes[1][i], planes[2][i]);
                    out[3 * i..3 * i + 3].copy_from_slice(&[clamp(r), clamp(g), clamp(b)]);
                }
            }
            (Model::Rgb, out)
        }
        _ => {
            // 4 components: Adobe transform 2 (or unknown) is YCCK, otherwise CMYK. Pillow reads the
            // result as "CMYK;I", i.e. inverted.
            let ycck = matches!(adobe, Some(t) if t != 0);
            let t = YccTables::new();
            let mut out = vec![0u8; n * 4];
            for i in 0..n {
                let cmyk = if ycck {
                    let [r, g, b] = t.rgb(planes[0][i], planes[1][i], planes[2][i]);
                    [clamp(255 - r), clamp(255 - g), clamp(255 - b), planes[3][i]]
                } else {
                    [planes[0][i], planes[1][i], planes[2][i], planes[3][i]]
                };
                for (o, v) in out[4 * i..4 * i + 4].iter_mut().zip(cmyk) {
                    *o = 255 - v;
                }
            }
            (Model::Cmyk, out)
        }
    };
    Ok(Image { width: f.width as u32, height: f.height as u32, model, data })
}
