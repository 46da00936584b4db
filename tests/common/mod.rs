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
