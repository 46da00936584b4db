//! Resampling: a port of Pillow's `Resample.c` (convolution, 8- and 16-bit fixed point) and
//! `Geometry.c`'s `ImagingScaleAffine` (NEAREST), so that a resize gives Pillow's integers.

/// A region of an image, in pixels.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rect {
    pub(super) x: u32,
    pub(super) y: u32,
    pub(super) w: u32,
    pub(super) h: u32,
}

#[derive(Clone, Copy)]
pub(super) enum Filter {
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
pub(super) struct Coeffs {
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
pub(super) trait Kernel {
    type T: Copy + Default;
    type W;
    fn weights(c: &Coeffs) -> Vec<Vec<Self::W>>;
    /// Weighted sum of `k.len()` samples starting at `src[at]`, `stride` apart.
    fn dot(src: &[Self::T], at: usize, stride: usize, k: &[Self::W]) -> Self::T;
}

/// Pillow's 8-bit passes: fixed-point weights with 22 fraction bits, rounded and clipped per pass.
pub(super) struct U8Kernel;

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
pub(super) struct U16Kernel;

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
pub(super) fn resample<K: Kernel>(
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
pub(super) fn nearest_resize(src: &[u8], w: u32, h: u32, ch: usize, nw: u32, nh: u32, crop: Rect) -> Vec<u8> {
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
pub(super) fn muldiv255(a: u32, b: u32) -> u8 {
    let t = a * b + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// RGBA -> RGBa / LA -> La (Pillow `rgbA2rgba`, `lA2la`).
pub(super) fn premultiply(buf: &mut [u8], ch: usize) {
    for px in buf.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        for v in &mut px[..ch - 1] {
            *v = muldiv255(*v as u32, a);
        }
    }
}

/// RGBa -> RGBA / La -> LA (Pillow `rgba2rgbA`, `la2lA`): truncating division, alpha 0 and 255 untouched.
pub(super) fn unpremultiply(buf: &mut [u8], ch: usize) {
    for px in buf.chunks_exact_mut(ch) {
        let a = px[ch - 1] as u32;
        if a != 0 && a != 255 {
            for v in &mut px[..ch - 1] {
                *v = ((255 * *v as u32) / a).min(255) as u8;
            }
        }
    }
}
