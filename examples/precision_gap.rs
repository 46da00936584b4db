//! What reduced precision costs, on the same model, images and label set (HAM-7), against f32 on
//! the CPU: f16 compute on wgpu (where the adapter has shader-f16; lavapipe does), and the web
//! bundle's f16 and int8 weight storage (dequantised to f32, computed on the CPU).
//!
//!     cargo run --release --example precision_gap -- MODEL_DIR [IMAGE…]

use burn::tensor::{DType, Device, FloatDType};
use dermlip::knowledge::labels::{LabelSet, ZERO_SHOT_TEMPLATES};
use dermlip::knowledge::zero_shot::{l2_normalize, logits, softmax};
use dermlip::pipeline::classify_embedding;
use dermlip::weights::StateDict;
use dermlip::{DermLip, ModelFileConfig};

struct Run {
    embeddings: Vec<Vec<f32>>,
    weights: Vec<Vec<f32>>,
}

fn run(model: &DermLip, images: &[&[u8]], classes: &[String], templates: &[String]) -> Run {
    Run {
        embeddings: model.embed_images(images).expect("image embeddings"),
        weights: model.zero_shot_weights(classes, templates).expect("class weights"),
    }
}

/// A model whose weights went through the bundle's storage format and back.
fn stored(dir: &std::path::Path, format: &str) -> DermLip {
    let (_, weights_path) = dermlip::checkpoint::locate(dir).expect("weights");
    let sd = StateDict::from_file(&weights_path).expect("state dict");
    let sd = match format {
        "f16" => sd.convert_floats(DType::F16),
        _ => {
            // As `convert --image-weights int8`: int8 image tower, f16 text tower.
            let mut sd = sd;
            let image = sd.split_off(dermlip::Towers::image_key).quantize_int8().convert_floats(DType::F16);
            let mut all = sd.convert_floats(DType::F16);
            let keys: Vec<String> = image.keys().cloned().collect();
            let mut image = image;
            for k in keys {
                let t = image.remove(&k).expect("listed");
                all.insert(k, t);
            }
            all
        }
    };
    let bytes = sd.to_safetensors_bytes().expect("safetensors");
    let config = ModelFileConfig::from_checkpoint_dir(dir).expect("config");
    DermLip::from_parts(config, StateDict::from_safetensors_bytes(bytes).expect("read back"), Device::flex())
        .expect("model")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: precision_gap MODEL_DIR [IMAGE…]");
        std::process::exit(2);
    };
    let images: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("fixture images")
            .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
            .filter(|p| p.ends_with(".jpg") || p.ends_with(".png"))
            .collect();
        v.sort();
        v
    };
    let dir = std::path::Path::new(model);
    let bytes: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).expect("image")).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let set = LabelSet::builtin("ham7").unwrap();
    let templates: Vec<String> = ZERO_SHOT_TEMPLATES.iter().map(|s| s.to_string()).collect();
    let classes = set.classes();

    let exact = run(&DermLip::load(dir, Device::flex()).expect("model"), &refs, classes, &templates);
    let mut rows = Vec::new();
    let mut gpu = Device::wgpu_options().init().expect("a wgpu adapter");
    if gpu.supports_dtype(FloatDType::F16) {
        gpu.configure(FloatDType::F16).expect("f16 before any tensor");
        let m = DermLip::load(dir, gpu).expect("model on wgpu in f16");
        rows.push(("f16 compute (wgpu)", run(&m, &refs, classes, &templates)));
    } else {
        println!("(this wgpu adapter has no f16: f16 compute not measured)");
    }
    for format in ["f16", "int8"] {
        let label = if format == "f16" { "f16 weights (bundle)" } else { "int8 image weights (bundle)" };
        rows.push((label, run(&stored(dir, format), &refs, classes, &templates)));
    }

    println!("| {model} | min cosine (image embedding) | max |Δprob| (HAM-7) | same top-1 |");
    println!("|---|---:|---:|---:|");
    for (label, r) in &rows {
        let (mut worst_prob, mut worst_cos, mut same) = (0f32, 1f32, 0);
        for (a, b) in exact.embeddings.iter().zip(&r.embeddings) {
            let cos: f32 = l2_normalize(a).iter().zip(l2_normalize(b)).map(|(x, y)| x * y).sum();
            worst_cos = worst_cos.min(cos);
            let p = softmax(&logits(a, &exact.weights));
            let q = softmax(&logits(b, &r.weights));
            worst_prob = p.iter().zip(&q).map(|(x, y)| (x - y).abs()).fold(worst_prob, f32::max);
            let t = classify_embedding(a, &exact.weights, classes, 1)[0].index;
            same += usize::from(t == classify_embedding(b, &r.weights, classes, 1)[0].index);
        }
        println!("| {label} | {worst_cos:.6} | {worst_prob:.2e} | {same}/{} |", images.len());
    }
}
