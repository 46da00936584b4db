//! Parity of a full-size checkpoint against the references written by
//! `tests/reference/make_fixtures.py --full` (not committed: ~600 MB per weights file).
//!
//! cargo run --release --example full_parity -- tests/reference/full/vit-b-16-random.json \
//!     tests/reference/full/models/vit-b-16-random [cpu|wgpu]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use common::{argmax, embed_reference_inputs, fixtures, max_abs_diff, Reference};
use dermlip::knowledge::zero_shot::{logits, softmax};
use dermlip::DermLip;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: full_parity REFERENCE.json MODEL_DIR [cpu|wgpu]");
        std::process::exit(2);
    }
    let r: Reference =
        serde_json::from_str(&std::fs::read_to_string(&args[0]).expect("reference file")).expect("reference JSON");
    let device = match args.get(2).map(String::as_str).unwrap_or("cpu") {
        "wgpu" => Device::wgpu_options().init().expect("no wgpu adapter"),
        _ => Device::flex(),
    };
    let t = Instant::now();
    let model = DermLip::load(Path::new(&args[1]), device).unwrap_or_else(|e| {
        eprintln!("full_parity: {e}");
        std::process::exit(1)
    });
    println!("loaded in {:.1} s", t.elapsed().as_secs_f64());

    let (images, texts) = embed_reference_inputs(&model, &r);
    let image_err = r.images.iter().zip(&images).map(|(a, b)| max_abs_diff(&a.embedding, b)).fold(0.0, f32::max);
    let text_err = r.texts.iter().zip(&texts).map(|(a, b)| max_abs_diff(&a.embedding, b)).fold(0.0, f32::max);
    let magnitude = r.images.iter().flat_map(|i| i.embedding.iter()).fold(0f32, |m, x| m.max(x.abs()));

    let zs = &r.zero_shot;
    let mut same_top1 = 0;
    let mut prob_err = 0f32;
    for (i, e) in images.iter().enumerate() {
        let p = softmax(&logits(e, &zs.classifier));
        prob_err = prob_err.max(max_abs_diff(&p, &zs.probs[i]));
        same_top1 += usize::from(argmax(&p) == zs.top1[i]);
        // Rust's own decoding + resizing, for information.
        let bytes = std::fs::read(fixtures().join(&r.images[i].file)).unwrap();
        let own = model.embed_images(&[bytes.as_slice()]).unwrap();
        let own_top1 = argmax(&softmax(&logits(&own[0], &zs.classifier)));
        println!(
            "  {}: top-1 PIL-crop {} / Rust-preprocess {} / reference {}",
            r.images[i].file,
            argmax(&p),
            own_top1,
            zs.top1[i]
        );
    }
    println!("model {} on {:?}", r.model, model.device);
    println!("image embeddings: max |Δ| {image_err:e} (largest |value| {magnitude:.3})");
    println!("text embeddings:  max |Δ| {text_err:e}");
    println!("zero-shot probabilities: max |Δ| {prob_err:e}; identical top-1 {same_top1}/{}", images.len());
}
