//! Bad checkpoints, configs and command lines: each must give a clear error, never a panic or a
//! silently different model.

use crate::common;

use std::process::Command;

use burn::tensor::{Device, TensorData};
use common::*;
use dermlip::weights::StateDict;
use dermlip::{DermLip, ModelFileConfig};

fn tiny_config() -> ModelFileConfig {
    let text = std::fs::read_to_string(model_dir("tiny-gelu").join("open_clip_config.json")).unwrap();
    ModelFileConfig::from_json_str(&text).unwrap()
}

fn tiny_weights() -> StateDict {
    StateDict::from_file(&model_dir("tiny-gelu").join("open_clip_model.safetensors")).unwrap()
}

fn load_err(weights: StateDict) -> String {
    match DermLip::from_parts(tiny_config(), weights, Device::flex()) {
        Ok(_) => panic!("a broken checkpoint loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let mut w = tiny_weights();
    w.remove("visual.transformer.resblocks.1.mlp.c_fc.bias").unwrap();
    let msg = load_err(w);
    assert!(msg.contains("missing tensor 'visual.transformer.resblocks.1.mlp.c_fc.bias'"), "{msg}");
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let mut w = tiny_weights();
    let shape = w.shape("text_projection").unwrap().to_vec();
    let wrong = [shape[0], shape[1] - 1];
    w.insert("text_projection", TensorData::new(vec![0f32; wrong[0] * wrong[1]], wrong));
    let msg = load_err(w);
    assert!(msg.contains("'text_projection'"), "{msg}");
    assert!(msg.contains(&format!("{wrong:?}")) && msg.contains(&format!("{shape:?}")), "{msg}");
}

#[test]
fn unexpected_tensor_is_named() {
    let mut w = tiny_weights();
    w.insert("visual.attnpool.weight", TensorData::new(vec![0f32; 4], [2, 2]));
    let msg = load_err(w);
    assert!(msg.contains("unexpected tensor") && msg.contains("visual.attnpool.weight"), "{msg}");
}

#[test]
fn truncated_safetensors_is_an_error() {
    let bytes = std::fs::read(model_dir("tiny-gelu").join("open_clip_model.safetensors")).unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let r = StateDict::from_safetensors_bytes(bytes[..cut].to_vec());
        assert!(r.is_err(), "a safetensors file cut at {cut} bytes was accepted");
    }
}

#[test]
fn truncated_and_foreign_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("dermlip-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = std::fs::read(model_dir("tiny-gelu").join("open_clip_pytorch_model.bin")).unwrap();
    let cases: [(&str, &[u8]); 3] =
        [("empty.safetensors", b""), ("half.bin", &bin[..bin.len() / 2]), ("notes.pt", b"this is not a checkpoint\n")];
    for (name, bytes) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = StateDict::from_file(&p).err().unwrap_or_else(|| panic!("{name} loaded"));
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_problems_are_named() {
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir("tiny-gelu").join("open_clip_config.json")).unwrap())
            .unwrap();
    let cases: Vec<(&str, Box<dyn Fn(&mut serde_json::Value)>, &str)> = vec![
        ("unknown vision key", Box::new(|v| v["model_cfg"]["vision_cfg"]["patch_sise"] = 16.into()), "patch_sise"),
        ("unknown top key", Box::new(|v| v["extra"] = 1.into()), "extra"),
        ("bad number", Box::new(|v| v["model_cfg"]["embed_dim"] = (-3).into()), "embed_dim"),
        ("hf text tower", Box::new(|v| v["model_cfg"]["text_cfg"]["hf_model_name"] = "bert".into()), "hf_model_name"),
        ("bad interpolation", Box::new(|v| v["preprocess_cfg"]["interpolation"] = "lanczos7".into()), "lanczos7"),
    ];
    for (what, edit, needle) in cases {
        let mut v = base.clone();
        edit(&mut v);
        let err = ModelFileConfig::from_value(&v).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(err.to_string().contains(needle), "{what}: {err}");
    }
    assert!(ModelFileConfig::from_json_str("{not json").is_err());
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A failing command exits non-zero with one line naming the problem.
fn assert_cli_error(args: &[&str], needle: &str) {
    let (code, _, err) = cli(args);
    assert_ne!(code, 0, "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

#[test]
fn cli_bad_inputs() {
    let model = model_dir("tiny-gelu");
    let model = model.to_str().unwrap();
    let dir = std::env::temp_dir().join(format!("dermlip-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("photo.jpg");
    std::fs::write(&fake, "just text, not a JPEG").unwrap();
    let fake = fake.to_str().unwrap();
    let good = fixtures().join("images/coffee_odd_225x301.jpg");
    let good = good.to_str().unwrap();

    assert_cli_error(&["classify", fake, "--model", model, "--labels", "a,b"], "photo.jpg");
    assert_cli_error(&["classify", "/no/such.jpg", "--model", model, "--labels", "a,b"], "/no/such.jpg");
    assert_cli_error(&["classify", good, "--model", "/no/model", "--labels", "a,b"], "/no/model");
    assert_cli_error(&["classify", good, "--model", model, "--labels", "a,,b"], "empty");
    assert_cli_error(&["classify", good, "--model", model, "--labels", "a,b,a"], "twice");
    assert_cli_error(&["embed-text", "--model", model, "--out", "x.txt", "hi"], "x.txt");
    assert_cli_error(&["classify", good, "--model", model, "--label-set", "ham8"], "unknown label set \"ham8\"");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_classify_and_embed() {
    let model = model_dir("tiny-gelu");
    let model = model.to_str().unwrap();
    let image = fixtures().join("images/coffee_odd_225x301.jpg");
    let image = image.to_str().unwrap();
    let (code, out, err) =
        cli(&["classify", image, "--model", model, "--labels", "melanoma,nevus,acne", "--top-k", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let preds = v[0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert!(preds[0]["probability"].as_f64().unwrap() >= preds[1]["probability"].as_f64().unwrap());

    let npy = std::env::temp_dir().join(format!("dermlip-emb-{}.npy", std::process::id()));
    let (code, _, err) = cli(&["embed-text", "melanoma", "nevus", "--model", model, "--out", npy.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&npy).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY\x01\x00"));
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let dim = reference("tiny-gelu").embed_dim;
    assert!(header.contains(&format!("'shape': (2, {dim})")), "{header}");
    assert_eq!(bytes.len(), 10 + header_len + 2 * dim * 4);
    std::fs::remove_file(&npy).ok();
}

/// `classify --hierarchy`: the chain descends with non-increasing probabilities, every step at or
/// above the threshold, and ends at the top class with that class's own probability.
#[test]
fn cli_classify_hierarchy() {
    let model = model_dir("tiny-gelu");
    let image = fixtures().join("images/retina_1600x1200_q80.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .arg("classify")
        .arg(&image)
        .args(["--label-set", "ham7", "--hierarchy", "0.3", "--json", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chain = v[0]["hierarchy"].as_array().unwrap();
    let top = &v[0]["predictions"][0];
    assert!(!chain.is_empty());
    let probs: Vec<f64> = chain.iter().map(|n| n["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[1] <= w[0] + 1e-6) && probs.iter().all(|&p| p >= 0.3), "{probs:?}");
    let last = chain.last().unwrap();
    if top["probability"].as_f64().unwrap() >= 0.3 {
        assert_eq!(last["name"], top["label"]);
        assert!((last["prob"].as_f64().unwrap() - top["probability"].as_f64().unwrap()).abs() < 1e-6);
    }
    assert_cli_error(
        &[
            "classify",
            image.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--labels",
            "a,b",
            "--hierarchy",
            "2",
        ],
        "between 0 and 1",
    );
}

#[test]
fn cli_concepts_reports_sorted_scores() {
    let model = model_dir("tiny-gelu");
    let image = fixtures().join("images/chelsea_451x300_q95_444.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .arg("concepts")
        .arg(&image)
        .args(["--top-k", "4", "--json", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scores: Vec<f64> = v[0]["concepts"].as_array().unwrap().iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert_eq!(scores.len(), 4);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
}
