//! Shared by the integration tests: fixture paths and the reference files written by
//! `tests/reference/make_fixtures.py` (open_clip, PyTorch, float32).
#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

#[derive(Deserialize)]
pub struct Reference {
    pub model: String,
    pub logit_scale: f32,
    pub embed_dim: usize,
    pub images: Vec<RefImage>,
    pub texts: Vec<RefText>,
    pub zero_shot: RefZeroShot,
}

#[derive(Deserialize)]
pub struct RefImage {
    pub file: String,
    pub reference: String,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct RefText {
    pub text: String,
    pub ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct RefZeroShot {
    pub classnames: Vec<String>,
    pub templates: Vec<String>,
    pub classifier: Vec<Vec<f32>>,
    pub probs: Vec<Vec<f32>>,
    pub top1: Vec<usize>,
    pub margin: Vec<f32>,
}

pub fn reference(name: &str) -> Reference {
    let path = fixtures().join("reference").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The reference 224×224 crop (PIL's output) of a test image.
pub fn reference_crop(rel: &str) -> image::RgbImage {
    let path = fixtures().join(rel);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

/// `model`'s image and text embeddings of the reference inputs: PIL's crops and open_clip's ids.
pub fn embed_reference_inputs(model: &dermlip::DermLip, r: &Reference) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let pixels: Vec<Vec<f32>> = r
        .images
        .iter()
        .map(|im| dermlip::input::preprocess::normalize(&reference_crop(&im.reference), &model.preprocess))
        .collect();
    let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
    let images = dermlip::pipeline::rows(model.encode_pixels(&pixels)).unwrap();
    let texts = dermlip::pipeline::rows(model.encode_ids(&ids)).unwrap();
    (images, texts)
}

pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// The wgpu device (lavapipe in CI). Burn's wgpu runtime can be initialised once per process and
/// the integration tests share one process, so the first caller initialises it, the rest reuse it.
pub fn wgpu_device() -> burn::tensor::Device {
    static DEVICE: std::sync::OnceLock<burn::tensor::Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            burn::tensor::Device::wgpu_options()
                .init()
                .expect("no wgpu adapter: install mesa-vulkan-drivers (scripts/setup.sh does)")
        })
        .clone()
}

/// How far a committed file's model outputs may sit from a fresh run's. The same code gives
/// different last bits on different CPUs (the CPU backend's matmul picks its SIMD kernel at run
/// time, which changes the summation order): 2e-7 measured between two x86 machines, on embeddings
/// of unit length. A real change to the model or its inputs moves them by far more.
pub const FLOAT_NOISE: f64 = 1e-5;

/// `Ok` when two JSON documents are equal, floats within [`FLOAT_NOISE`] (integers, strings and
/// the document's shape exactly); the error names the first difference by its path.
pub fn json_close(ours: &serde_json::Value, theirs: &serde_json::Value, path: &str) -> Result<(), String> {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if (a - b).abs() <= FLOAT_NOISE {
                Ok(())
            } else {
                Err(format!("{path}: {a} against {b}"))
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Err(format!("{path}: {} values against {}", a.len(), b.len()));
            }
            a.iter().zip(b).enumerate().try_for_each(|(i, (a, b))| json_close(a, b, &format!("{path}[{i}]")))
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            if keys(a) != keys(b) {
                return Err(format!("{path}: keys {:?} against {:?}", keys(a), keys(b)));
            }
            a.iter().try_for_each(|(k, v)| json_close(v, &b[k], &format!("{path}.{k}")))
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} against {b}")),
    }
}

/// `Ok` when two little-endian f32 arrays have the same length and agree within [`FLOAT_NOISE`].
pub fn f32_bytes_close(ours: &[u8], theirs: &[u8], what: &str) -> Result<(), String> {
    if ours.len() != theirs.len() || ours.len() % 4 != 0 {
        return Err(format!("{what}: {} bytes against {}", ours.len(), theirs.len()));
    }
    let f = |c: &[u8]| f32::from_le_bytes(c[..4].try_into().unwrap()) as f64;
    match ours.chunks_exact(4).zip(theirs.chunks_exact(4)).position(|(a, b)| !((f(a) - f(b)).abs() <= FLOAT_NOISE)) {
        None => Ok(()),
        Some(i) => Err(format!("{what}: value {i} is {} against {}", f(&ours[4 * i..]), f(&theirs[4 * i..]))),
    }
}

/// `Ok` when two safetensors files hold the same tensors (names, dtypes, shapes, metadata, layout)
/// and their f32 values agree within [`FLOAT_NOISE`]; other dtypes must be byte-equal.
pub fn safetensors_close(ours: &[u8], theirs: &[u8]) -> Result<(), String> {
    fn split(b: &[u8]) -> Result<(serde_json::Value, &[u8]), String> {
        let n = b.get(..8).map(|h| u64::from_le_bytes(h.try_into().unwrap()) as usize).ok_or("no header length")?;
        let header = b.get(8..8 + n).ok_or("truncated header")?;
        Ok((serde_json::from_slice(header).map_err(|e| e.to_string())?, &b[8 + n..]))
    }
    let ((h1, d1), (h2, d2)) = (split(ours)?, split(theirs)?);
    if h1 != h2 {
        return Err(format!("the headers differ: {h1} against {h2}"));
    }
    for (name, t) in h1.as_object().unwrap().iter().filter(|(k, _)| *k != "__metadata__") {
        let at = |i: usize| t["data_offsets"][i].as_u64().unwrap() as usize;
        let (a, b) = (&d1[at(0)..at(1)], &d2[at(0)..at(1)]);
        if t["dtype"] == "F32" {
            f32_bytes_close(a, b, name)?;
        } else if a != b {
            return Err(format!("{name} ({}) differs", t["dtype"]));
        }
    }
    Ok(())
}
