//! End-of-run PNG curves from `metrics.jsonl`: `loss.png`, `lr.png`, `logit_scale.png` and, when
//! there were evaluations, `recall.png` (image→text R@1 in red, text→image R@1 in blue). Line
//! charts with a title, the y range at the top/bottom left and the step range below, written with
//! a built-in 3×5 pixel font (no font files); the value ranges also go to `plots.json`.

use std::path::Path;

use image::{Rgb, RgbImage};

const W: u32 = 720;
const H: u32 = 400;
const LEFT: u32 = 90;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 40;
const INK: Rgb<u8> = Rgb([40, 40, 40]);

type Series<'a> = (&'a [(f64, f64)], Rgb<u8>);

/// 3×5 glyphs, one row per 3 bits (most significant bit = left column).
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 2, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        '=' => [0, 7, 0, 7, 0],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

/// Draws `s` with its top-left corner at (x, y), each font pixel `scale`×`scale`.
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, scale: u32, colour: Rgb<u8>) {
    for (i, c) in s.chars().enumerate() {
        let rows = glyph(c);
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as u32 * 4 + col) * scale + dx;
                            let py = y + r as u32 * scale + dy;
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, colour);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        format!("{v:.2e}").to_uppercase()
    }
}

fn chart(title: &str, series: &[Series]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    for i in 0..=10 {
        let x = LEFT + pw * i / 10;
        let y = TOP + ph * i / 10;
        let grey = if i == 0 || i == 10 { Rgb([150, 150, 150]) } else { Rgb([228, 228, 228]) };
        for t in TOP..=TOP + ph {
            img.put_pixel(x, t, grey);
        }
        for t in LEFT..=LEFT + pw {
            img.put_pixel(t, y, grey);
        }
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in series.iter().flat_map(|(s, _)| s.iter()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    text(&mut img, LEFT, 12, title, 3, INK);
    text(&mut img, 6, TOP, &number(y1), 2, INK);
    text(&mut img, 6, TOP + ph - 10, &number(y0), 2, INK);
    text(&mut img, LEFT, TOP + ph + 10, &format!("STEP {}", number(x0)), 2, INK);
    let last = number(x1);
    text(&mut img, LEFT + pw - (last.len() as u32 * 8), TOP + ph + 10, &last, 2, INK);
    let px = |x: f64| LEFT as f64 + (x - x0) / (x1 - x0) * pw as f64;
    let py = |y: f64| (TOP + ph) as f64 - (y - y0) / (y1 - y0) * ph as f64;
    for (s, colour) in series {
        for w in s.windows(2) {
            let (ax, ay, bx, by) = (px(w[0].0), py(w[0].1), px(w[1].0), py(w[1].1));
            let n = ((bx - ax).abs().max((by - ay).abs()) as usize).max(1);
            for k in 0..=n {
                let t = k as f64 / n as f64;
                let (x, y) = ((ax + (bx - ax) * t) as u32, (ay + (by - ay) * t) as u32);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    if x + dx < W && y + dy < H {
                        img.put_pixel(x + dx, y + dy, *colour);
                    }
                }
            }
        }
    }
    img
}

pub fn write_plots(metrics: &Path, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(metrics).map_err(|e| e.to_string())?;
    let mut loss = Vec::new();
    let mut lr = Vec::new();
    let mut scale = Vec::new();
    let mut i2t = Vec::new();
    let mut t2i = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
        if v.get("event").and_then(|e| e.as_str()) == Some("eval") {
            if let (Some(s), Some(a), Some(b)) = (f("eval_step"), f("image_to_text_r1"), f("text_to_image_r1")) {
                i2t.push((s, a));
                t2i.push((s, b));
            }
        } else if let (Some(s), Some(l)) = (f("step"), f("loss")) {
            loss.push((s, l));
            lr.push((s, f("lr").unwrap_or(0.0)));
            scale.push((s, f("logit_scale").unwrap_or(0.0)));
        }
    }
    let red = Rgb([200, 30, 30]);
    let blue = Rgb([30, 60, 200]);
    let save = |name: &str, img: RgbImage| img.save(out.join(name)).map_err(|e| format!("{name}: {e}"));
    let range = |s: &[(f64, f64)]| {
        let lo = s.iter().map(|p| p.1).fold(f64::MAX, f64::min);
        let hi = s.iter().map(|p| p.1).fold(f64::MIN, f64::max);
        serde_json::json!({ "points": s.len(), "min": lo, "max": hi })
    };
    let mut ranges = serde_json::Map::new();
    if !loss.is_empty() {
        save("loss.png", chart("TRAINING LOSS", &[(&loss, red)]))?;
        save("lr.png", chart("LEARNING RATE", &[(&lr, blue)]))?;
        save("logit_scale.png", chart("LOGIT SCALE (LN)", &[(&scale, blue)]))?;
        ranges.insert("loss.png".into(), range(&loss));
        ranges.insert("lr.png".into(), range(&lr));
        ranges.insert("logit_scale.png".into(), range(&scale));
    }
    if !i2t.is_empty() {
        save("recall.png", chart("RECALL AT 1: RED IMAGE-TEXT, BLUE TEXT-IMAGE", &[(&i2t, red), (&t2i, blue)]))?;
        ranges.insert("recall.png".into(), range(&[i2t, t2i].concat()));
    }
    std::fs::write(out.join("plots.json"), serde_json::to_string_pretty(&ranges).unwrap()).map_err(|e| e.to_string())
}
