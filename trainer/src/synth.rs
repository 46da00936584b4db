//! A synthetic mini-Derm1M for tests and demos: coloured shapes on textured "skin", each with a
//! caption naming its size, colour, shape and texture, written in the released layouts:
//!
//! ```text
//! DIR/Derm1M_v2_pretrain.csv, DIR/Derm1M_v2_validation.csv   (Derm1M columns)
//! DIR/images/{train,val}/NNNNN.png                           (folder layout)
//! DIR/zips/Derm1M_part{1,2}.zip                              (same files under "Derm1M/", stored)
//! DIR/shards/train-{00000..00003}.tar, val-00000.tar         (WebDataset: key.png + key.txt + key.json)
//! DIR/synth.json                                             (counts, incl. the deliberate defects)
//! ```
//!
//! Deliberate defects in the training split, each of which the trainer must skip and count: a CSV
//! row with an empty caption, a row with a single field, a row naming an image that exists
//! nowhere, a garbage image and a truncated PNG (present in folder, zip and shards), a shard
//! sample without caption, and a last shard cut off in the middle of an entry.
//! Everything is a pure function of the seed.

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::Path;

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::rng::Rng;

pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [205, 35, 35]),
    ("brown", [110, 62, 25]),
    ("purple", [128, 45, 165]),
    ("black", [18, 18, 18]),
    ("yellow", [225, 205, 35]),
    ("blue", [35, 75, 205]),
];
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
pub const SIZES: [&str; 2] = ["small", "large"];
pub const TEXTURES: [&str; 3] = ["plain", "striped", "dotted"];

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub n_train: usize,
    pub n_val: usize,
    pub image_size: u32,
    pub seed: u64,
    pub train_shards: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig { n_train: 384, n_val: 64, image_size: 64, seed: 0, train_shards: 4 }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SynthReport {
    pub train_good: usize,
    pub val: usize,
    /// CSV rows that are malformed (empty caption, missing fields).
    pub csv_bad_rows: usize,
    /// CSV rows whose image exists in no folder or archive.
    pub csv_missing_images: usize,
    /// Images present but not decodable (in folder, zip and shards alike).
    pub corrupt_images: usize,
    /// Shard samples with an image but no caption.
    pub wds_incomplete: usize,
    /// Shards cut off mid-entry.
    pub wds_truncated_shards: usize,
    /// Samples lost with the truncated tail of the last shard.
    pub wds_lost_in_truncation: usize,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub file: String,
    pub caption: String,
    pub label: String,
    pub png: Vec<u8>,
}

fn draw(colour: [u8; 3], shape: usize, large: bool, texture: usize, size: u32, rng: &mut Rng) -> RgbImage {
    let skin = [(rng.range(200.0, 235.0)) as u8, (rng.range(150.0, 185.0)) as u8, (rng.range(120.0, 150.0)) as u8];
    let dark = [skin[0].saturating_sub(45), skin[1].saturating_sub(45), skin[2].saturating_sub(40)];
    let period = 6 + rng.below(3) as u32;
    let phase = rng.below(period as usize) as u32;
    let mut img = RgbImage::from_fn(size, size, |x, y| {
        let tex = match texture {
            1 => (x + y + phase) % period < period / 2,
            2 => (x + phase) % period < 2 && (y + phase) % period < 2,
            _ => false,
        };
        let base = if tex { dark } else { skin };
        let n = rng.range(-6.0, 6.0);
        Rgb(base.map(|c| (c as f64 + n).clamp(0.0, 255.0) as u8))
    });
    let s = size as f64;
    let r = if large { rng.range(0.28, 0.36) * s } else { rng.range(0.12, 0.17) * s };
    let cx = rng.range(r + 1.0, s - r - 1.0);
    let cy = rng.range(r + 1.0, s - r - 1.0);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
            let inside = match shape {
                0 => dx * dx + dy * dy <= r * r,
                1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
                2 => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
                _ => (dx.abs() <= r * 0.3 && dy.abs() <= r) || (dy.abs() <= r * 0.3 && dx.abs() <= r),
            };
            if inside {
                let n = rng.range(-10.0, 10.0);
                img.put_pixel(x, y, Rgb(colour.map(|c| (c as f64 + n).clamp(0.0, 255.0) as u8)));
            }
        }
    }
    img
}

fn png(img: &RgbImage) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png).expect("png encode");
    buf.into_inner()
}

/// (colour, shape, size, texture) combination `c` of the 144.
fn combo(c: usize) -> (usize, usize, usize, usize) {
    (c % 6, (c / 6) % 4, (c / 24) % 2, (c / 48) % 3)
}

fn item(split: &str, i: usize, c: usize, size: u32, rng: &mut Rng) -> Item {
    let (col, shape, sz, tex) = combo(c);
    let img = draw(COLOURS[col].1, shape, sz == 1, tex, size, rng);
    Item {
        file: format!("{split}/{i:05}.png"),
        caption: format!("a {} {} {} lesion on {} skin", SIZES[sz], COLOURS[col].0, SHAPES[shape], TEXTURES[tex]),
        label: format!("{} {}", COLOURS[col].0, SHAPES[shape]),
        png: png(&img),
    }
}

/// The clean samples of both splits (validation captions are all distinct).
pub fn items(cfg: &SynthConfig) -> (Vec<Item>, Vec<Item>) {
    let mut rng = Rng::derive(&[cfg.seed, 0x5717]);
    let mut combos: Vec<usize> = (0..144).collect();
    rng.shuffle(&mut combos);
    let val: Vec<Item> = (0..cfg.n_val).map(|i| item("val", i, combos[i % 144], cfg.image_size, &mut rng)).collect();
    let train: Vec<Item> =
        (0..cfg.n_train).map(|i| item("train", i, rng.below(144), cfg.image_size, &mut rng)).collect();
    (train, val)
}

const HEADER: &str =
    "filename,truncated_caption,caption,disease_label,hierarchical_disease_label,skin_concept,source,source_type";

fn csv_row(it: &Item) -> String {
    format!(
        "{},\"{}\",\"{}. Synthetic sample.\",{},\"synthetic, {}\",\"{}\",synthetic,generated",
        it.file,
        it.caption,
        it.caption,
        it.label,
        it.label,
        it.caption.split(' ').nth(2).unwrap_or("")
    )
}

fn write_tar(path: &Path, entries: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    let mut b = tar::Builder::new(File::create(path)?);
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice())?;
    }
    b.into_inner()?.sync_all()
}

fn wds_entries(items: &[Item], key_prefix: &str, offset: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let key = format!("{key_prefix}{:06}", offset + i);
        out.push((format!("{key}.png"), it.png.clone()));
        out.push((format!("{key}.txt"), it.caption.clone().into_bytes()));
        out.push((
            format!("{key}.json"),
            serde_json::json!({ "caption": it.caption, "label": it.label }).to_string().into_bytes(),
        ));
    }
    out
}

/// Writes the dataset into `dir`. Returns what a reader must find.
pub fn generate(dir: &Path, cfg: &SynthConfig) -> std::io::Result<SynthReport> {
    let (train, val) = items(cfg);
    let mut report = SynthReport { train_good: train.len(), val: val.len(), ..Default::default() };
    for sub in ["images/train", "images/val", "zips", "shards"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    // Defective images: garbage, and a PNG cut short.
    let corrupt = vec![
        Item {
            file: "train/corrupt_00000.png".into(),
            caption: "a corrupt image".into(),
            label: "circle".into(),
            png: b"this is not an image at all".repeat(20),
        },
        Item {
            file: "train/truncated_00001.png".into(),
            caption: "a truncated image".into(),
            label: "square".into(),
            png: train[0].png[..train[0].png.len().min(120)].to_vec(),
        },
    ];
    report.corrupt_images = corrupt.len();

    // Folder layout.
    for it in train.iter().chain(&val).chain(&corrupt) {
        fs::write(dir.join("images").join(&it.file), &it.png)?;
    }

    // CSVs (with the defective rows spread through the training CSV).
    let mut rows: Vec<String> = train.iter().map(csv_row).collect();
    rows.insert(rows.len() / 3, format!("{},\"\",\"\",circle,,,synthetic,generated", train[1].file));
    rows.insert(rows.len() / 2, "train/only_one_field.png".to_string());
    rows.insert(
        2 * rows.len() / 3,
        csv_row(&Item {
            file: "train/missing_99999.png".into(),
            caption: "a missing image".into(),
            label: "cross".into(),
            png: vec![],
        }),
    );
    report.csv_bad_rows = 2;
    report.csv_missing_images = 1;
    for (k, it) in corrupt.iter().enumerate() {
        rows.insert((k + 1) * rows.len() / 4, csv_row(it));
    }
    let mut f = File::create(dir.join("Derm1M_v2_pretrain.csv"))?;
    writeln!(f, "{HEADER}")?;
    for r in &rows {
        writeln!(f, "{r}")?;
    }
    let mut f = File::create(dir.join("Derm1M_v2_validation.csv"))?;
    writeln!(f, "{HEADER}")?;
    for it in &val {
        writeln!(f, "{}", csv_row(it))?;
    }

    // Zip layout: two stored archives with a top folder, as the released parts.
    let all: Vec<&Item> = train.iter().chain(&corrupt).chain(&val).collect();
    let half = all.len() / 2;
    for (p, part) in [&all[..half], &all[half..]].iter().enumerate() {
        let mut z = zip::ZipWriter::new(File::create(dir.join("zips").join(format!("Derm1M_part{}.zip", p + 1)))?);
        let opts = zip::write::SimpleFileOptions::default().compression_method(if p == 0 {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        });
        for it in part.iter() {
            z.start_file(format!("Derm1M/{}", it.file), opts).map_err(std::io::Error::other)?;
            z.write_all(&it.png)?;
        }
        z.finish().map_err(std::io::Error::other)?;
    }

    // WebDataset shards.
    let per = train.len().div_ceil(cfg.train_shards.max(1));
    for s in 0..cfg.train_shards.max(1) {
        let lo = (s * per).min(train.len());
        let hi = ((s + 1) * per).min(train.len());
        let mut entries = wds_entries(&train[lo..hi], "", lo);
        if s == 0 {
            entries.push(("corrupt_000000.png".into(), corrupt[0].png.clone()));
            entries.push(("corrupt_000000.txt".into(), b"a corrupt image".to_vec()));
            entries.push(("nocaption_000000.png".into(), train[0].png.clone()));
            report.wds_incomplete = 1;
        }
        let path = dir.join("shards").join(format!("train-{s:05}.tar"));
        write_tar(&path, &entries)?;
        if s + 1 == cfg.train_shards.max(1) && hi > lo {
            // Cut the last shard inside its last image entry (the last sample's png, txt and json go).
            let len = fs::metadata(&path)?.len();
            let last = &train[hi - 1];
            let tail = 1024 /* end blocks */ + 3 * 512 + last.caption.len() as u64 + 200 + last.png.len() as u64 / 2;
            let cut = len.saturating_sub(tail).max(512);
            let f = fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(cut)?;
            report.wds_truncated_shards = 1;
        }
    }
    write_tar(&dir.join("shards").join("val-00000.tar"), &wds_entries(&val, "val", 0))?;

    // What the truncation cost: count what a reader recovers from the last shard.
    let last = dir.join("shards").join(format!("train-{:05}.tar", cfg.train_shards.max(1) - 1));
    let recovered = crate::data::Dataset::from_webdataset(&last.to_string_lossy()).map(|d| d.len()).unwrap_or(0);
    let lo = ((cfg.train_shards.max(1) - 1) * per).min(train.len());
    report.wds_lost_in_truncation = (train.len() - lo).saturating_sub(recovered);
    fs::write(dir.join("synth.json"), serde_json::to_string_pretty(&report).unwrap())?;
    Ok(report)
}

/// A tiny CLIP config matching the synthetic images (for tests and demos): `open_clip_config.json`.
pub fn tiny_config_json(image_size: u32) -> serde_json::Value {
    serde_json::json!({
        "model_cfg": {
            "embed_dim": 32,
            "vision_cfg": { "image_size": image_size, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16, "mlp_ratio": 2.0 },
            "text_cfg": { "context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2, "mlp_ratio": 2.0 }
        },
        "preprocess_cfg": {
            "size": image_size,
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic",
            "resize_mode": "shortest"
        }
    })
}

/// Zero-shot prompts for the synthetic labels (`"{colour} {shape}"`, 24 classes): every size and
/// texture, averaged per class as open_clip's zero-shot classifier does.
pub fn zero_shot_templates() -> Vec<String> {
    SIZES.iter().flat_map(|s| TEXTURES.iter().map(move |t| format!("a {s} {{}} lesion on {t} skin"))).collect()
}
