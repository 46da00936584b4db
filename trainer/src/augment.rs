//! The Derm1M / open_clip training transform:
//! `RandomResizedCrop(size, scale=(0.4, 1.0), ratio=(3/4, 4/3), bicubic)` → RGB →
//! `RandomApply([ColorJitter(0.32, 0.32, 0.32, 0.08)], p=0.8)` → `RandomGrayscale(p=0.2)` →
//! `ToTensor` → `Normalize(mean, std)`. The transform ends at the `u8` image `ToTensor` receives
//! (torchvision jitters PIL images, which stay `u8`); `ToTensor` + `Normalize` run on the device
//! (`crate::pixels`).
//!
//! The crop parameters follow torchvision's `RandomResizedCrop.get_params` exactly (10 attempts,
//! log-uniform aspect ratio, central fallback). The resize is bicubic (Catmull-Rom, a = -0.5, as
//! PIL's BICUBIC) through the `image` crate, not bit-exact with PIL: it is an augmentation. The
//! colour jitter follows torchvision's tensor implementation (random order of the four
//! adjustments, factors uniform in `[1-x, 1+x]`, hue shift uniform in `[-h, h]`) on f32 pixels,
//! rounded to `u8` once at the end (PIL rounds after each adjustment).
//! Evaluation never comes here: it crops with `dermlip::input::preprocess::crop_rgb`, the
//! inference path.

use image::imageops::{self, FilterType};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub color_jitter: (f64, f64, f64, f64),
    pub color_jitter_prob: f64,
    pub gray_scale_prob: f64,
}

impl Default for AugmentConfig {
    /// Derm1M's `--aug-cfg scale='(0.4, 1.0)' color_jitter='(0.32, 0.32, 0.32, 0.08)'
    /// color_jitter_prob=0.8 gray_scale_prob=0.2`.
    fn default() -> Self {
        AugmentConfig {
            scale: (0.4, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            color_jitter: (0.32, 0.32, 0.32, 0.08),
            color_jitter_prob: 0.8,
            gray_scale_prob: 0.2,
        }
    }
}

/// torchvision `RandomResizedCrop.get_params`: `(top, left, height, width)`.
pub fn crop_params(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> (u32, u32, u32, u32) {
    let area = width as f64 * height as f64;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.range(scale.0, scale.1);
        let aspect = rng.range(lr0, lr1).exp();
        let w = (target * aspect).sqrt().round() as i64;
        let h = (target / aspect).sqrt().round() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let i = rng.below((height as i64 - h + 1) as usize) as u32;
            let j = rng.below((width as i64 - w + 1) as usize) as u32;
            return (i, j, h as u32, w as u32);
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (width as f64 / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((height as f64 * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// Applies the training transform to a decoded RGB image and appends the `size`×`size` result to
/// `out` as CHW `u8` planes (what `ToTensor` receives).
pub fn augment_into(img: &RgbImage, size: u32, cfg: &AugmentConfig, rng: &mut Rng, out: &mut Vec<u8>) {
    let (top, left, h, w) = crop_params(img.width(), img.height(), cfg.scale, cfg.ratio, rng);
    let view = imageops::crop_imm(img, left, top, w.max(1), h.max(1));
    let resized = imageops::resize(&*view, size, size, FilterType::CatmullRom);
    // HWC f32 in [0, 1], made only when an adjustment applies (draws in torchvision's order).
    let floats = |img: &RgbImage| -> Vec<[f32; 3]> {
        img.pixels().map(|p| [p.0[0] as f32 / 255.0, p.0[1] as f32 / 255.0, p.0[2] as f32 / 255.0]).collect()
    };
    let mut px = None;
    if rng.bernoulli(cfg.color_jitter_prob) {
        color_jitter(px.insert(floats(&resized)), cfg.color_jitter, rng);
    }
    if rng.bernoulli(cfg.gray_scale_prob) {
        for p in px.get_or_insert_with(|| floats(&resized)).iter_mut() {
            let l = gray(*p);
            *p = [l, l, l];
        }
    }
    let Some(px) = px else {
        push_chw(&resized, out);
        return;
    };
    for c in 0..3 {
        out.extend(px.iter().map(|p| (p[c].clamp(0.0, 1.0) * 255.0).round() as u8));
    }
}

/// Appends an RGB image as CHW `u8` planes.
pub fn push_chw(img: &RgbImage, out: &mut Vec<u8>) {
    let raw = img.as_raw();
    for c in 0..3 {
        out.extend(raw.iter().skip(c).step_by(3));
    }
}

fn gray(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn blend(a: f32, b: f32, ratio: f32) -> f32 {
    (ratio * a + (1.0 - ratio) * b).clamp(0.0, 1.0)
}

/// torchvision `ColorJitter.forward` on a float image.
pub fn color_jitter(px: &mut [[f32; 3]], (b, c, s, h): (f64, f64, f64, f64), rng: &mut Rng) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let bf = rng.range((1.0 - b).max(0.0), 1.0 + b) as f32;
    let cf = rng.range((1.0 - c).max(0.0), 1.0 + c) as f32;
    let sf = rng.range((1.0 - s).max(0.0), 1.0 + s) as f32;
    let hf = rng.range(-h, h) as f32;
    for op in order {
        match op {
            0 if b > 0.0 => px.iter_mut().for_each(|p| p.iter_mut().for_each(|v| *v = (*v * bf).clamp(0.0, 1.0))),
            1 if c > 0.0 => {
                let mean = px.iter().map(|p| gray(*p)).sum::<f32>() / px.len().max(1) as f32;
                px.iter_mut().for_each(|p| p.iter_mut().for_each(|v| *v = blend(*v, mean, cf)));
            }
            2 if s > 0.0 => px.iter_mut().for_each(|p| {
                let g = gray(*p);
                p.iter_mut().for_each(|v| *v = blend(*v, g, sf));
            }),
            3 if h > 0.0 => px.iter_mut().for_each(|p| *p = shift_hue(*p, hf)),
            _ => {}
        }
    }
}

fn shift_hue([r, g, b]: [f32; 3], shift: f32) -> [f32; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let v = maxc;
    let cr = maxc - minc;
    let s = if maxc > 0.0 { cr / maxc } else { 0.0 };
    let mut hue = if cr == 0.0 {
        0.0
    } else if maxc == r {
        ((g - b) / cr).rem_euclid(6.0) / 6.0
    } else if maxc == g {
        ((b - r) / cr + 2.0) / 6.0
    } else {
        ((r - g) / cr + 4.0) / 6.0
    };
    hue = (hue + shift).rem_euclid(1.0);
    // hsv -> rgb
    let i = (hue * 6.0).floor();
    let f = hue * 6.0 - i;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (i as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_within_bounds_and_scale() {
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let (i, j, h, w) = crop_params(300, 200, (0.4, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(i + h <= 200 && j + w <= 300 && h > 0 && w > 0);
            let frac = (h * w) as f64 / 60000.0;
            assert!(frac > 0.35 && frac <= 1.0, "{frac}");
        }
    }

    #[test]
    fn hue_shift_roundtrip() {
        let p = [0.8, 0.3, 0.1];
        let q = shift_hue(p, 0.0);
        for c in 0..3 {
            assert!((p[c] - q[c]).abs() < 1e-5);
        }
        let back = shift_hue(shift_hue(p, 0.07), -0.07);
        for c in 0..3 {
            assert!((p[c] - back[c]).abs() < 1e-4);
        }
    }

    #[test]
    fn augment_shape_and_determinism() {
        let img = RgbImage::from_fn(50, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, 128]));
        let cfg = AugmentConfig::default();
        let run = |seed| {
            let mut out = vec![7u8];
            augment_into(&img, 32, &cfg, &mut Rng::new(seed), &mut out);
            out
        };
        let a = run(9);
        assert_eq!(a.len(), 1 + 3 * 32 * 32, "appends");
        assert_eq!(a[0], 7);
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
    }

    /// Without jitter or grayscale the crop reaches the output unchanged (no round trip through
    /// f32 moves a value), as CHW planes.
    #[test]
    fn plain_crop_is_exact_chw() {
        let img = RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, (x * y) as u8]));
        let cfg = AugmentConfig {
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
            color_jitter_prob: 0.0,
            gray_scale_prob: 0.0,
            ..AugmentConfig::default()
        };
        let mut out = Vec::new();
        augment_into(&img, 16, &cfg, &mut Rng::new(1), &mut out);
        let want: Vec<u8> = (0..3).flat_map(|c| img.pixels().map(move |p| p.0[c])).collect();
        assert_eq!(out, want);
    }
}
