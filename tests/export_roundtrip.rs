//! `dermlip::export`: an open_clip checkpoint loaded and exported again is the same checkpoint
//! (names, shapes, layouts, values), and the written safetensors re-load to identical embeddings.

use std::path::Path;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use dermlip::export::{clip_state_dict, open_clip_config};
use dermlip::weights::StateDict;
use dermlip::{Clip, ModelFileConfig};

fn fixture(name: &str) -> (ModelFileConfig, StateDict) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(name);
    let cfg =
        ModelFileConfig::from_json_str(&std::fs::read_to_string(dir.join("open_clip_config.json")).unwrap()).unwrap();
    (cfg, StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap())
}

fn floats(t: &TensorData) -> Vec<f32> {
    t.clone().convert_dtype(DType::F32).try_to_vec::<f32>().unwrap()
}

#[test]
fn export_inverts_loading() {
    for name in ["tiny-gelu", "tiny-quickgelu"] {
        let device = Device::flex();
        let (cfg, original) = fixture(name);
        let (_, weights) = fixture(name);
        let model = Clip::from_state_dict(&cfg.model, weights, &device).unwrap();
        let exported = clip_state_dict(&model).unwrap();
        let a: Vec<&String> = original.keys().collect();
        let b: Vec<&String> = exported.keys().collect();
        assert_eq!(a, b, "{name}: same state-dict keys");
        for key in original.keys() {
            let (o, e) = (original.get(key).unwrap(), exported.get(key).unwrap());
            assert_eq!(o.shape(), e.shape(), "{name}: {key} shape");
            assert_eq!(floats(o), floats(e), "{name}: {key} values");
        }

        // Through the safetensors bytes: identical embeddings.
        let bytes = exported.to_safetensors_bytes().unwrap();
        let again =
            Clip::from_state_dict(&cfg.model, StateDict::from_safetensors_bytes(bytes).unwrap(), &device).unwrap();
        let size = cfg.model.vision.image_size;
        let px: Vec<f32> = (0..3 * size * size).map(|i| ((i * 31) % 97) as f32 / 48.0 - 1.0).collect();
        let img = || Tensor::<4>::from_data(TensorData::new(px.clone(), [1, 3, size, size]), &device);
        let ctx = cfg.model.text.context_length;
        let mut ids = vec![0i32; ctx];
        ids[..4].copy_from_slice(&[49406, 320, 1929, 49407]);
        let txt = || Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ctx]), &device);
        assert_eq!(
            model.encode_image(img()).into_data().try_to_vec::<f32>().unwrap(),
            again.encode_image(img()).into_data().try_to_vec::<f32>().unwrap()
        );
        assert_eq!(
            model.encode_text(txt()).into_data().try_to_vec::<f32>().unwrap(),
            again.encode_text(txt()).into_data().try_to_vec::<f32>().unwrap()
        );

        // The config file round-trips too.
        let written = open_clip_config(&cfg).unwrap();
        assert_eq!(ModelFileConfig::from_value(&written).unwrap(), cfg, "{name}: config");
    }
}

/// DermLIP-PanDerm's class (`CustomTextCLIP`: PanDerm ViT + BERT): every tensor of the tiny
/// checkpoint comes back under its hub name, layout and value (the BERT `position_ids` buffer, not
/// a parameter, excepted); the written directory (safetensors, `open_clip_config.json`,
/// `config.json`, `tokenizer.json`) re-loads through `DermLip::load` to identical embeddings.
#[test]
fn export_inverts_loading_panderm_bert() {
    use dermlip::bert::OPTIONAL_BUFFERS;
    use dermlip::export::{bert_config_json, save_open_clip};
    use dermlip::DermLip;

    let device = Device::flex();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/tiny-panderm");
    let cfg = ModelFileConfig::from_checkpoint_dir(&dir).unwrap();
    let original = StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap();
    let weights = StateDict::from_file(&dir.join("open_clip_model.safetensors")).unwrap();
    let model = Clip::from_state_dict(&cfg.model, weights, &device).unwrap();
    let exported = clip_state_dict(&model).unwrap();
    let a: Vec<&String> = original.keys().filter(|k| !OPTIONAL_BUFFERS.contains(&k.as_str())).collect();
    let b: Vec<&String> = exported.keys().collect();
    assert_eq!(a, b, "same state-dict keys");
    for key in a {
        let (o, e) = (original.get(key).unwrap(), exported.get(key).unwrap());
        assert_eq!(o.shape(), e.shape(), "{key} shape");
        assert_eq!(floats(o), floats(e), "{key} values");
    }

    // The config files: open_clip_config.json + the BERT's config.json give back the same config.
    let written = open_clip_config(&cfg).unwrap();
    assert!(written["model_cfg"]["vision_cfg"].get("pretrain_path").is_some_and(|v| v.is_null()));
    let bert = bert_config_json(&cfg.model).unwrap();
    let parsed = ModelFileConfig::from_json_strs(&written.to_string(), Some(&bert.to_string()))
        .unwrap()
        .with_tokenizer(match &cfg.model.text.arch {
            dermlip::config::TextArch::Bert(b) => b.tokenizer.clone().unwrap(),
            _ => unreachable!(),
        });
    assert_eq!(parsed, cfg, "config");

    // A whole checkpoint directory: DermLip::load gives identical embeddings and token ids.
    let out = tempfile_dir("export-panderm");
    save_open_clip(&model, &cfg, &out).unwrap();
    let again = DermLip::load(&out, device.clone()).unwrap();
    let first = DermLip::load(&dir, device.clone()).unwrap();
    assert_eq!(again.config, first.config);
    let size = cfg.model.vision.image_size;
    let px: Vec<f32> = (0..3 * size * size).map(|i| ((i * 31) % 97) as f32 / 48.0 - 1.0).collect();
    let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(vec(first.encode_pixels(&[px.clone()])), vec(again.encode_pixels(&[px])));
    let texts = ["melanoma on the back", "a photo of psoriasis"];
    let ids = first.token_ids(&texts).unwrap();
    assert_eq!(ids, again.token_ids(&texts).unwrap());
    assert_eq!(vec(first.encode_ids(&ids)), vec(again.encode_ids(&ids)));
    let _ = std::fs::remove_dir_all(&out);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dermlip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
