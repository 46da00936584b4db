//! The f16 gap: the same model, images and label set computed in f16 on wgpu (when the adapter
//! has shader-f16; lavapipe does) against f32 on the CPU. The browser uses f16 compute only when
//! asked (`precision: 'f16'`); this measures what that costs.
//!
//!     cargo run --release --example f16_gap -- MODEL_DIR [IMAGE…]

use burn::tensor::{Device, FloatDType};
use dermlip::labels::{LabelSet, ZERO_SHOT_TEMPLATES};
use dermlip::pipeline::classify_embedding;
use dermlip::DermLip;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(model) = args.first() else {
        eprintln!("usage: f16_gap MODEL_DIR [IMAGE…]");
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
    let mut gpu = Device::wgpu_options().init().expect("a wgpu adapter");
    if !gpu.supports_dtype(FloatDType::F16) {
        println!("this wgpu adapter has no f16 support: nothing to measure");
        return;
    }
    gpu.configure(FloatDType::F16).expect("f16 before any tensor");
    let path = std::path::Path::new(model);
    let f32_model = DermLip::load(path, Device::flex()).expect("model on the CPU");
    let f16_model = DermLip::load(path, gpu).expect("model on wgpu in f16");

    let set = LabelSet::builtin("ham7").unwrap();
    let templates: Vec<String> = ZERO_SHOT_TEMPLATES.iter().map(|s| s.to_string()).collect();
    let w32 = f32_model.zero_shot_weights(set.classes(), &templates).unwrap();
    let w16 = f16_model.zero_shot_weights(set.classes(), &templates).unwrap();
    let bytes: Vec<Vec<u8>> = images.iter().map(|p| std::fs::read(p).expect("image")).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let e32 = f32_model.embed_images(&refs).unwrap();
    let e16 = f16_model.embed_images(&refs).unwrap();

    let (mut worst_prob, mut worst_cos, mut same_top1) = (0f32, 1f32, 0);
    for (a, b) in e32.iter().zip(&e16) {
        let cos = dermlip::zero_shot::l2_normalize(a)
            .iter()
            .zip(dermlip::zero_shot::l2_normalize(b))
            .map(|(x, y)| x * y)
            .sum();
        worst_cos = worst_cos.min(cos);
        let p32 = dermlip::zero_shot::softmax(&dermlip::zero_shot::logits(a, &w32));
        let p16 = dermlip::zero_shot::softmax(&dermlip::zero_shot::logits(b, &w16));
        worst_prob = p32.iter().zip(&p16).map(|(x, y)| (x - y).abs()).fold(worst_prob, f32::max);
        let t32 = classify_embedding(a, &w32, set.classes(), 1)[0].index;
        let t16 = classify_embedding(b, &w16, set.classes(), 1)[0].index;
        same_top1 += usize::from(t32 == t16);
    }
    println!("| model | images | min cosine (image embedding) | max |Δprob| (ham7) | same top-1 |");
    println!("|---|---:|---:|---:|---:|");
    println!("| {model} | {} | {worst_cos:.6} | {worst_prob:.2e} | {same_top1}/{} |", images.len(), images.len());
}
