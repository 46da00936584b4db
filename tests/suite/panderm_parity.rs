//! DermLIP-PanDerm (PanDerm ViT + PubMedBERT) against the PyTorch reference: the small random-weight
//! checkpoint in tests/fixtures/models/tiny-panderm is loaded through the user-facing loader and its
//! outputs compared with `tests/reference/make_panderm_fixtures.py`'s (CAE code + transformers' BERT).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use common::*;
use dermlip::config::{ClipConfig, TextArch, VisionArch};
use dermlip::input::tokenizer::wordpiece::TokenizerFile;
use dermlip::model::clip::{Clip, Towers};
use dermlip::model::panderm::sincos_position_table;
use dermlip::pipeline::rows;
use dermlip::weights::StateDict;
use dermlip::{DermLip, ModelFileConfig};
use serde::Deserialize;

/// The issue's bound on unnormalised embeddings (f32, CPU).
const TOL: f32 = 1e-4;

#[derive(Deserialize)]
struct PanDermReference {
    logit_scale: f32,
    cli_image: String,
    texts: Vec<RefText>,
    images: Vec<PanDermImage>,
}

#[derive(Deserialize)]
struct PanDermImage {
    embedding: Vec<f32>,
    feature: Vec<f32>,
}

fn panderm_reference() -> PanDermReference {
    let path = fixtures().join("panderm/reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn tiny_dir() -> PathBuf {
    model_dir("tiny-panderm")
}

fn load() -> DermLip {
    DermLip::load(&tiny_dir(), Device::flex()).unwrap_or_else(|e| panic!("loading tiny-panderm: {e}"))
}

/// The reference pixels, `[n][3·size·size]`.
fn pixels() -> Vec<Vec<f32>> {
    let sd = StateDict::from_file(&fixtures().join("panderm/pixels.safetensors")).unwrap();
    let data = sd.get("pixels").unwrap();
    let n = data.shape()[0];
    let flat = data.try_to_vec::<f32>().unwrap();
    flat.chunks(flat.len() / n).map(<[f32]>::to_vec).collect()
}

fn worst(got: &[Vec<f32>], want: &[&Vec<f32>], what: &str) -> f32 {
    assert_eq!(got.len(), want.len());
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = max_abs_diff(g, w);
        assert!(d <= TOL, "{what} {i}: max |Δ| {d:e} > {TOL:e}");
        worst = worst.max(d);
    }
    println!("{what}: {} rows, max |Δ| {worst:e}", got.len());
    worst
}

fn text_config(dir: &Path) -> ModelFileConfig {
    let text = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
    let bert = std::fs::read_to_string(dir.join("config.json")).unwrap();
    ModelFileConfig::from_json_strs(&text, Some(&bert)).unwrap()
}

#[test]
fn image_embeddings_and_features_match_pytorch() {
    let r = panderm_reference();
    let model = load();
    assert!(matches!(model.config.vision.arch, VisionArch::PanDerm));
    let px = pixels();
    let emb = rows(model.encode_pixels(&px)).unwrap();
    worst(&emb, &r.images.iter().map(|i| &i.embedding).collect::<Vec<_>>(), "PanDerm image embedding");
    let feat = rows(model.encode_pixel_features(&px)).unwrap();
    assert_eq!(feat[0].len(), 64, "the pre-head feature has the vision width");
    worst(&feat, &r.images.iter().map(|i| &i.feature).collect::<Vec<_>>(), "PanDerm pre-head feature");
    let scale = model.model.logit_scale.val().into_data().try_to_vec::<f32>().unwrap()[0];
    assert!((scale - r.logit_scale).abs() < 1e-6);
}

#[test]
fn text_embeddings_match_pytorch() {
    let r = panderm_reference();
    let model = load();
    let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
    let got = rows(model.encode_ids(&ids)).unwrap();
    worst(&got, &r.texts.iter().map(|t| &t.embedding).collect::<Vec<_>>(), "BERT text embedding");
    // One text per pass: only its own tokens are run (trailing padding is dropped), same result.
    let alone: Vec<Vec<f32>> =
        ids.iter().map(|row| rows(model.encode_ids(std::slice::from_ref(row))).unwrap().remove(0)).collect();
    worst(&alone, &r.texts.iter().map(|t| &t.embedding).collect::<Vec<_>>(), "BERT text embedding, one per pass");
    // Our tokenizer gives the same ids, so the texts themselves embed the same.
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(model.token_ids(&texts).unwrap(), ids);
    worst(&model.embed_texts(&texts).unwrap(), &r.texts.iter().map(|t| &t.embedding).collect::<Vec<_>>(), "texts");
}

#[test]
fn checkpoint_pos_embed_is_the_sincos_table() {
    let sd = StateDict::from_file(&tiny_dir().join("open_clip_model.safetensors")).unwrap();
    let stored = sd.get("visual.pos_embed").unwrap().try_to_vec::<f32>().unwrap();
    let ours = sincos_position_table(4, 64);
    let d = max_abs_diff(&stored, &ours);
    println!("sin-cos table: max |Δ| {d:e}");
    assert!(d <= 1e-6, "max |Δ| {d:e}");
}

/// The Derm1M fork's `PanDerm-base-w-PubMed-256.json`, as on the hub (`pretrain_path` null) and as in
/// the repository (a path), bare and wrapped as `open_clip_config.json`.
#[test]
fn released_config_selects_panderm_and_pubmedbert() {
    let expected = ClipConfig::panderm_base_pubmedbert_256();
    for pretrain in ["null", "\"data/pretrain_weight/panderm-base-vit.pth\""] {
        let model_cfg = format!(
            r#"{{"embed_dim": 512,
                "vision_cfg": {{"image_size": 224, "layers": 12, "width": 768, "patch_size": 16, "pretrain_path": {pretrain}}},
                "text_cfg": {{"context_length": 256, "hf_model_name": "neuml/pubmedbert-base-embeddings",
                             "hf_tokenizer_name": "neuml/pubmedbert-base-embeddings", "hf_pooler_type": "mean_pooler"}}}}"#
        );
        let hub = format!(
            r#"{{"model_cfg": {model_cfg}, "preprocess_cfg": {{"mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest"}}}}"#
        );
        for text in [&model_cfg, &hub] {
            let cfg = ModelFileConfig::from_json_str(text).unwrap();
            assert_eq!(cfg.model, expected);
            assert_eq!(cfg.preprocess.size, 224);
        }
    }
    // The full-size graph has the dossier's parameter count: vision 86.2 M, BERT 108.9 M, proj 0.82 M.
    let model = Clip::new(&expected, &Device::flex());
    use burn::module::Module;
    assert_eq!(model.num_params(), 86_201_600 + 108_891_648 + 819_200 + 1);
    // The ViT-B-16 config still selects open_clip's graph.
    let vit = ModelFileConfig::from_json_str(
        &std::fs::read_to_string(model_dir("tiny-gelu").join("open_clip_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(vit.model.vision.arch, VisionArch::OpenClip);
    assert_eq!(vit.model.text.arch, TextArch::Clip);
}

#[test]
fn image_tower_first_then_tokenizer_and_text_tower() {
    // The browser's order: image tower without a tokenizer, then the tokenizer and the text tower.
    let r = panderm_reference();
    let dir = tiny_dir();
    let mut all = StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap();
    let image = all.split_off(Towers::image_key);
    let mut model = DermLip::from_parts_towers(text_config(&dir), image, Towers::Image, Device::flex()).unwrap();
    let emb = rows(model.encode_pixels(&pixels())).unwrap();
    worst(&emb, &r.images.iter().map(|i| &i.embedding).collect::<Vec<_>>(), "image tower alone");
    assert!(model.token_ids(&["melanoma"]).is_err());
    let err = model.add_text_tower(StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap());
    assert!(err.unwrap_err().to_string().contains("tokenizer"));
    let bytes = std::fs::read(dir.join("tokenizer.json")).unwrap();
    model.set_tokenizer(TokenizerFile::from_named_bytes("tokenizer.json", bytes).unwrap()).unwrap();
    model.add_text_tower(all).unwrap();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    worst(&model.embed_texts(&texts).unwrap(), &r.texts.iter().map(|t| &t.embedding).collect::<Vec<_>>(), "late text");
}

fn config_error(open_clip_config: &str, bert: Option<&str>) -> String {
    ModelFileConfig::from_json_strs(open_clip_config, bert).unwrap_err().to_string()
}

#[test]
fn bad_configs_are_one_line_errors() {
    let dir = tiny_dir();
    let text = std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap();
    let bert = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let unknown_model = config_error(&text, None);
    assert!(unknown_model.contains("dermlip-test/tiny-pubmedbert") && unknown_model.contains("config.json"));
    let cases = [
        (text.replace("\"hf_pooler_type\": \"mean_pooler\"", "\"hf_pooler_type\": \"cls_pooler\""), "cls_pooler"),
        (text.replace("\"hf_proj_type\": \"mlp\"", "\"hf_proj_type\": \"mlp2\""), "hf_proj_type"),
        (text.replace("\"hf_proj_type\"", "\"hf_proj_typo\""), "hf_proj_typo"),
        (text.replace("\"context_length\": 256", "\"context_length\": 512"), "context_length"),
        (text.replace("\"width\": 64", "\"width\": 66, \"head_width\": 22").replace("\"head_width\": 16,", ""), "4"),
    ];
    for (cfg, needle) in cases {
        let e = config_error(&cfg, Some(&bert));
        assert!(e.contains(needle) && !e.contains('\n'), "{needle}: {e}");
    }
    let roberta = bert.replace("\"model_type\": \"bert\"", "\"model_type\": \"roberta\"");
    assert!(config_error(&text, Some(&roberta)).contains("model_type"));
    let relu = bert.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"relu\"");
    assert!(config_error(&text, Some(&relu)).contains("hidden_act"));
    assert!(config_error(&text, Some("{not json")).contains("config.json"));
}

fn load_error(weights: StateDict) -> String {
    let dir = tiny_dir();
    let cfg = text_config(&dir).with_tokenizer(TokenizerFile::Json(std::fs::read(dir.join("tokenizer.json")).unwrap()));
    match DermLip::from_parts(cfg, weights, Device::flex()) {
        Ok(_) => panic!("loading must fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_weights_are_one_line_errors() {
    let path = tiny_dir().join("open_clip_model.safetensors");
    let fresh = || StateDict::from_file(&path).unwrap();

    let mut sd = fresh();
    sd.remove("visual.blocks.1.attn.q_bias");
    let e = load_error(sd);
    assert!(e.contains("missing tensor 'visual.blocks.1.attn.q_bias'"), "{e}");

    let mut sd = fresh();
    sd.remove("text.proj.2.weight");
    assert!(load_error(sd).contains("'text.proj.2.weight'"));

    let mut sd = fresh();
    let gamma = sd.remove("visual.blocks.0.gamma_2").unwrap();
    sd.insert(
        "visual.blocks.0.gamma_2",
        burn::tensor::TensorData::new(gamma.try_to_vec::<f32>().unwrap()[..32].to_vec(), [32]),
    );
    let e = load_error(sd);
    assert!(e.contains("visual.blocks.0.gamma_2") && e.contains("[32]") && e.contains("[64]"), "{e}");

    let mut sd = fresh();
    let w = sd.get("text.transformer.encoder.layer.0.attention.self.query.bias").unwrap().clone();
    sd.insert("text.transformer.pooler.dense.bias", w);
    let e = load_error(sd);
    assert!(e.contains("unexpected tensor") && e.contains("text.transformer.pooler.dense.bias"), "{e}");

    // A ViT-B-16 checkpoint under the PanDerm config names the first PanDerm key it lacks.
    let vit = StateDict::from_file(&model_dir("tiny-gelu").join("open_clip_model.safetensors")).unwrap();
    assert!(load_error(vit).contains("missing tensor 'visual.patch_embed.proj.weight'"));
    let e = load_error(fresh().split_off(Towers::image_key));
    assert!(e.contains("missing tensor 'text.transformer.") && !e.contains('\n'), "{e}");
}

/// A copy of the fixture directory with some files left out.
fn copy_without(name: &str, skip: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dermlip-panderm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(tiny_dir()).unwrap() {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        if !skip.contains(&file.as_str()) {
            std::fs::copy(&p, dir.join(file)).unwrap();
        }
    }
    dir
}

#[test]
fn checkpoint_directory_files() {
    // vocab.txt alone is enough (tokenizer.json preferred when both exist).
    let dir = copy_without("vocab-only", &["tokenizer.json"]);
    let model = DermLip::load(&dir, Device::flex()).unwrap();
    let r = panderm_reference();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    let ids: Vec<Vec<u32>> = r.texts.iter().map(|t| t.ids.clone()).collect();
    assert_eq!(model.token_ids(&texts).unwrap(), ids);
    std::fs::remove_dir_all(&dir).ok();

    let dir = copy_without("no-tokenizer", &["tokenizer.json", "vocab.txt"]);
    let e = DermLip::load(&dir, Device::flex()).err().expect("no tokenizer must fail").to_string();
    assert!(e.contains("tokenizer.json or vocab.txt") && !e.contains('\n'), "{e}");
    std::fs::remove_dir_all(&dir).ok();

    let dir = copy_without("no-bert-config", &["config.json"]);
    let e = DermLip::load(&dir, Device::flex()).err().expect("unknown BERT must fail").to_string();
    assert!(e.contains("hf_model_name") && e.contains("config.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

fn cli(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip")).args(args).arg("--model").arg(tiny_dir()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn cli_embed_text_embed_image_and_classify() {
    let r = panderm_reference();
    let tmp = std::env::temp_dir().join(format!("dermlip-panderm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();

    let texts: Vec<&str> = r.texts.iter().take(4).map(|t| t.text.as_str()).filter(|t| !t.is_empty()).collect();
    let out_json = tmp.join("text.json");
    let mut args = vec!["embed-text", "--out", out_json.to_str().unwrap()];
    args.extend(&texts);
    cli(&args);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    for (item, t) in v.as_array().unwrap().iter().zip(r.texts.iter().filter(|t| !t.text.is_empty())) {
        let e: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        let d = max_abs_diff(&e, &t.embedding);
        assert!(d <= TOL, "CLI text {:?}: max |Δ| {d:e}", t.text);
    }

    // The real image goes through dermlip's own preprocessing (PIL's resize reproduced).
    let image = fixtures().join(&r.cli_image);
    let out_json = tmp.join("image.json");
    cli(&["embed-image", image.to_str().unwrap(), "--out", out_json.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let e: Vec<f32> = serde_json::from_value(v[0]["embedding"].clone()).unwrap();
    let d = max_abs_diff(&e, &r.images.last().unwrap().embedding);
    println!("CLI image (own preprocessing) vs open_clip preprocessing: max |Δ| {d:e}");
    assert!(d <= 1e-3, "CLI image: max |Δ| {d:e}");

    let out = cli(&["classify", image.to_str().unwrap(), "--labels", "melanoma,nevus,psoriasis", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let preds = v[0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let total: f64 = preds.iter().map(|p| p["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4, "probabilities sum to {total}");
    std::fs::remove_dir_all(&tmp).ok();
}

/// The same graph on wgpu (lavapipe in CI): masks, layer scale and the double norm on the GPU path.
#[test]
fn wgpu_matches_pytorch() {
    let device = wgpu_device();
    let r = panderm_reference();
    let model = DermLip::load(&tiny_dir(), device).unwrap();
    // Burn's kernels (the native default), then dermlip's (src/model/kernels/, the browser's).
    for own in [false, true] {
        dermlip::model::kernels::set_enabled(own);
        let k = if own { "dermlip's kernels" } else { "Burn's kernels" };
        let emb = rows(model.encode_pixels(&pixels())).unwrap();
        worst(
            &emb,
            &r.images.iter().map(|i| &i.embedding).collect::<Vec<_>>(),
            &format!("PanDerm image embedding on wgpu, {k}"),
        );
        let feat = rows(model.encode_pixel_features(&pixels())).unwrap();
        worst(
            &feat,
            &r.images.iter().map(|i| &i.feature).collect::<Vec<_>>(),
            &format!("PanDerm pre-head feature on wgpu, {k}"),
        );
        let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
        worst(
            &model.embed_texts(&texts).unwrap(),
            &r.texts.iter().map(|t| &t.embedding).collect::<Vec<_>>(),
            &format!("BERT on wgpu, {k}"),
        );
    }
}
