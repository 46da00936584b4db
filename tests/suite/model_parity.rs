//! The Burn graph against open_clip: the small random-weight checkpoints in tests/fixtures/models
//! are loaded through the same loader users use, and their outputs compared with the PyTorch
//! reference values (`tests/reference/make_fixtures.py`).

use crate::common;

use burn::tensor::Device;
use common::*;
use dermlip::knowledge::zero_shot::{class_weights, logits, softmax};
use dermlip::pipeline::{classify_embedding, rows};
use dermlip::DermLip;

/// The bound on unnormalised embeddings (f32, CPU).
const TOL: f32 = 1e-4;

fn load(dir: &str, file: Option<&str>, device: Device) -> DermLip {
    let path = match file {
        Some(f) => model_dir(dir).join(f),
        None => model_dir(dir),
    };
    DermLip::load(&path, device).unwrap_or_else(|e| panic!("loading {dir}: {e}"))
}

/// Image embeddings from PIL's exact crops, and text embeddings from open_clip's token ids.
fn check_embeddings(model: &DermLip, r: &Reference, what: &str) {
    let (images, texts) = embed_reference_inputs(model, r);
    let mut worst = 0f32;
    for (im, g) in r.images.iter().zip(&images) {
        let d = max_abs_diff(g, &im.embedding);
        assert!(d <= TOL, "{what}: image {} max |Δ| {d:e} > {TOL:e}", im.file);
        worst = worst.max(d);
    }
    for (t, g) in r.texts.iter().zip(&texts) {
        let d = max_abs_diff(g, &t.embedding);
        assert!(d <= TOL, "{what}: text {:?} max |Δ| {d:e} > {TOL:e}", t.text);
        worst = worst.max(d);
    }
    println!("{what}: {} images, {} texts, max |Δ| {worst:e}", r.images.len(), r.texts.len());
}

#[test]
fn gelu_safetensors_matches_open_clip() {
    let r = reference("tiny-gelu");
    let model = load("tiny-gelu", None, Device::flex());
    check_embeddings(&model, &r, "tiny-gelu safetensors");
    let scale = model.model.logit_scale.val().into_data().try_to_vec::<f32>().unwrap()[0];
    assert!((scale - r.logit_scale).abs() < 1e-6, "logit_scale {scale} vs {}", r.logit_scale);
}

#[test]
fn gelu_pytorch_bin_matches_open_clip() {
    let r = reference("tiny-gelu");
    let model = load("tiny-gelu", Some("open_clip_pytorch_model.bin"), Device::flex());
    check_embeddings(&model, &r, "tiny-gelu .bin");
}

#[test]
fn quickgelu_safetensors_matches_open_clip() {
    let r = reference("tiny-quickgelu");
    let model = load("tiny-quickgelu", None, Device::flex());
    check_embeddings(&model, &r, "tiny-quickgelu safetensors");
}

#[test]
fn quickgelu_training_checkpoint_matches_open_clip() {
    let r = reference("tiny-quickgelu");
    let model = load("tiny-quickgelu", Some("checkpoint.pt"), Device::flex());
    check_embeddings(&model, &r, "tiny-quickgelu checkpoint.pt");
}

/// The activation is part of the function: the QuickGELU checkpoint run with exact GELU must
/// not match its reference (so the parity tests above can fail on a wrong activation).
#[test]
fn activation_changes_the_result() {
    let r = reference("tiny-quickgelu");
    let dir = model_dir("tiny-quickgelu");
    let text = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
    let mut cfg = dermlip::ModelFileConfig::from_json_str(&text).unwrap();
    assert_eq!(cfg.model.activation, dermlip::Activation::QuickGelu);
    cfg.model.activation = dermlip::Activation::Gelu;
    let weights = dermlip::weights::StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap();
    let model = DermLip::from_parts(cfg, weights, Device::flex()).unwrap();
    let ids = vec![r.texts[0].ids.clone()];
    let got = rows(model.encode_ids(&ids)).unwrap();
    assert!(max_abs_diff(&got[0], &r.texts[0].embedding) > 1e-3);
}

#[test]
fn tokenizer_ids_match_reference_texts() {
    let model = load("tiny-gelu", None, Device::flex());
    for t in reference("tiny-gelu").texts {
        assert_eq!(model.tokenizer.encode(&t.text).unwrap(), t.ids, "ids of {:?}", t.text);
    }
}

/// Zero-shot protocol end to end: our tokenizer + text tower build the classifier, the PIL crops
/// give the probabilities, and Rust's own preprocessing gives the same top-1 on every image.
#[test]
fn zero_shot_matches_open_clip() {
    for name in ["tiny-gelu", "tiny-quickgelu"] {
        let r = reference(name);
        let model = load(name, None, Device::flex());
        let zs = &r.zero_shot;
        let weights = model.zero_shot_weights(&zs.classnames, &zs.templates).unwrap();
        for (w, rw) in weights.iter().zip(&zs.classifier) {
            assert!(max_abs_diff(w, rw) <= TOL, "{name}: classifier row differs");
        }
        let (emb, _) = embed_reference_inputs(&model, &r);
        for (i, e) in emb.iter().enumerate() {
            let probs = softmax(&logits(e, &weights));
            assert!(max_abs_diff(&probs, &zs.probs[i]) <= 1e-3, "{name}: probabilities of image {i}");
            assert_eq!(argmax(&probs), zs.top1[i], "{name}: top-1 of {}", r.images[i].file);
        }
        // Rust decoding + resizing instead of PIL's crops.
        for (i, im) in r.images.iter().enumerate() {
            let bytes = std::fs::read(fixtures().join(&im.file)).unwrap();
            let e = model.embed_images(&[bytes.as_slice()]).unwrap();
            let top = classify_embedding(&e[0], &weights, &zs.classnames, 1);
            assert_eq!(
                top[0].index, zs.top1[i],
                "{name}: top-1 of {} with Rust preprocessing (margin {})",
                im.file, zs.margin[i]
            );
        }
    }
}

#[test]
fn class_weights_are_normalised_means() {
    let e = vec![vec![3.0, 4.0], vec![0.0, 2.0]];
    let w = class_weights(&e, 2);
    // mean of (0.6, 0.8) and (0, 1) = (0.3, 0.9), renormalised.
    let n = (0.09f32 + 0.81).sqrt();
    assert!(max_abs_diff(&w[0], &[0.3 / n, 0.9 / n]) < 1e-6);
}

/// The same graph on wgpu (lavapipe in CI) gives the same numbers, with Burn's kernels (the native
/// default) and with dermlip's own (src/model/kernels/, the browser's default), GELU and QuickGELU.
#[test]
fn wgpu_matches_open_clip() {
    for name in ["tiny-gelu", "tiny-quickgelu"] {
        let r = reference(name);
        let model = load(name, None, wgpu_device());
        for own in [false, true] {
            dermlip::model::kernels::set_enabled(own);
            let kernels = if own { "dermlip's kernels" } else { "Burn's kernels" };
            check_embeddings(&model, &r, &format!("{name} on wgpu, {kernels}"));
        }
    }
}

/// The heat-map pass (every row through the last block, patch tokens projected) gives the same
/// image embedding as open_clip (ViT fixtures) and as the normal pass (PanDerm), and one projected
/// token per patch of the grid.
#[test]
fn the_heat_map_pass_keeps_the_embedding_and_yields_the_patch_grid() {
    for name in ["tiny-gelu", "tiny-quickgelu"] {
        let model = load(name, None, Device::flex());
        let r = reference(name);
        for im in r.images.iter().take(6) {
            let px = dermlip::input::preprocess::normalize(&reference_crop(&im.reference), &model.preprocess);
            let (e, p) = model.encode_pixels_with_patches(px);
            let e = rows(e).unwrap().remove(0);
            assert!(max_abs_diff(&e, &im.embedding) <= TOL, "{name} {}", im.file);
            let p = rows(p).unwrap();
            let grid = (model.preprocess.size / model.config.vision.patch_size as u32) as usize;
            assert_eq!(p.len(), grid * grid, "{name}");
            assert!(p.iter().all(|row| row.len() == model.config.embed_dim && row.iter().all(|v| v.is_finite())));
            // Patches differ from each other (the map is not a constant).
            assert!(max_abs_diff(&p[0], &p[p.len() - 1]) > 1e-3);
        }
    }
    let model = DermLip::load(&model_dir("tiny-panderm"), Device::flex()).unwrap();
    let crop = reference_crop("images/chelsea_451x300_q95_444.jpg");
    let crop = image::imageops::resize(
        &crop,
        model.preprocess.size,
        model.preprocess.size,
        image::imageops::FilterType::Triangle,
    );
    let px = dermlip::input::preprocess::normalize(&crop, &model.preprocess);
    let plain = rows(model.encode_pixels(std::slice::from_ref(&px))).unwrap().remove(0);
    let (e, p) = model.encode_pixels_with_patches(px);
    assert!(max_abs_diff(&rows(e).unwrap().remove(0), &plain) < 1e-5, "panderm");
    let grid = (model.preprocess.size / model.config.vision.patch_size as u32) as usize;
    assert_eq!(rows(p).unwrap().len(), grid * grid, "panderm");
}
