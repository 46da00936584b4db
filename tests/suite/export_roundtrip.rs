//! `dermlip::checkpoint::export`: an open_clip checkpoint loaded and exported again is the same checkpoint
//! (names, shapes, layouts, values), and the written safetensors re-load to identical embeddings.

use std::path::Path;

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use dermlip::checkpoint::export::{clip_state_dict, open_clip_config};
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
    use dermlip::checkpoint::export::bert_config_json;
    use dermlip::checkpoint::save_open_clip;
    use dermlip::model::bert::OPTIONAL_BUFFERS;
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

/// Every tower kind, its load and its save walk: a random model → state dict → a model loaded from
/// it → state dict gives back the same names, shapes and values, the key set is the one the
/// fixture checkpoints hold, and loading is strict (every key missing, one extra key, one
/// mis-shaped key each fail).
#[test]
fn every_tower_round_trips() {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::Distribution;
    use dermlip::model::bert::OPTIONAL_BUFFERS;

    /// Every float parameter redrawn N(0, 1): no two tensors share values (LayerNorm ones and
    /// zeros included), so a swapped or dropped tensor shows.
    struct Randomize;
    impl ModuleMapper for Randomize {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            p.map(|t| {
                let (shape, device) = (t.shape(), t.device());
                Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device)
            })
        }
    }
    fn copy(sd: &StateDict) -> StateDict {
        StateDict::from_tensors(sd.keys().map(|k| (k.clone(), sd.get(k).unwrap().clone())).collect())
    }
    fn without(sd: &StateDict, key: &str) -> StateDict {
        let mut out = copy(sd);
        out.remove(key);
        out
    }
    fn load_error(cfg: &ModelFileConfig, sd: StateDict, device: &Device) -> String {
        match Clip::from_state_dict(&cfg.model, sd, device) {
            Ok(_) => panic!("loading succeeded"),
            Err(e) => e.to_string(),
        }
    }

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models");
    let fixture_keys = |name: &str| -> Vec<String> {
        let sd = StateDict::from_file(&dir.join(name).join("open_clip_model.safetensors")).unwrap();
        sd.keys().filter(|k| !OPTIONAL_BUFFERS.contains(&k.as_str())).cloned().collect()
    };
    let gelu_keys = fixture_keys("tiny-gelu");
    let panderm_keys = fixture_keys("tiny-panderm");
    // `hf_proj_type: "linear"`: one `text.proj` instead of the MLP's `proj.0` / `proj.2`.
    let mut linear_keys: Vec<String> = panderm_keys.iter().filter(|k| !k.starts_with("text.proj.")).cloned().collect();
    linear_keys.push("text.proj.weight".into());
    linear_keys.sort();
    assert_eq!(linear_keys.len() + 1, panderm_keys.len());

    let clip_json = std::fs::read_to_string(dir.join("tiny-gelu/open_clip_config.json")).unwrap();
    let panderm_json = std::fs::read_to_string(dir.join("tiny-panderm/open_clip_config.json")).unwrap();
    let bert_json = std::fs::read_to_string(dir.join("tiny-panderm/config.json")).unwrap();
    let with_vision =
        |extra: &str| clip_json.replacen("\"image_size\": 224,", &format!("\"image_size\": 224, {extra}"), 1);
    let variants: Vec<(&str, ModelFileConfig, &Vec<String>)> = vec![
        ("ViT + CLIP text", ModelFileConfig::from_json_str(&clip_json).unwrap(), &gelu_keys),
        ("ViT avg pool", ModelFileConfig::from_json_str(&with_vision("\"pool_type\": \"avg\",")).unwrap(), &gelu_keys),
        (
            "ViT final_ln_after_pool",
            ModelFileConfig::from_json_str(&with_vision("\"final_ln_after_pool\": true,")).unwrap(),
            &gelu_keys,
        ),
        (
            "PanDerm + BERT (mlp proj)",
            ModelFileConfig::from_json_strs(&panderm_json, Some(&bert_json)).unwrap(),
            &panderm_keys,
        ),
        (
            "PanDerm + BERT (linear proj)",
            ModelFileConfig::from_json_strs(
                &panderm_json.replace("\"hf_proj_type\": \"mlp\"", "\"hf_proj_type\": \"linear\""),
                Some(&bert_json),
            )
            .unwrap(),
            &linear_keys,
        ),
    ];
    assert_eq!(variants[1].1.model.vision.pool, dermlip::config::VisionPool::Avg);
    assert!(variants[2].1.model.vision.final_ln_after_pool);
    assert!(matches!(&variants[4].1.model.text.arch,
        dermlip::config::TextArch::Bert(b) if b.projection == dermlip::config::HfProjection::Linear));
    let device = Device::flex();
    for (name, cfg, expected_keys) in &variants {
        let model = Clip::new(&cfg.model, &device).map(&mut Randomize);
        let first = clip_state_dict(&model).unwrap();
        let keys: Vec<String> = first.keys().cloned().collect();
        assert_eq!(&keys, *expected_keys, "{name}: the fixture checkpoint's keys");

        let loaded = Clip::from_state_dict(&cfg.model, copy(&first), &device).unwrap();
        let second = clip_state_dict(&loaded).unwrap();
        assert_eq!(keys, second.keys().cloned().collect::<Vec<_>>(), "{name}: same keys");
        for key in &keys {
            let (a, b) = (first.get(key).unwrap(), second.get(key).unwrap());
            assert_eq!(a.shape(), b.shape(), "{name}: {key} shape");
            let (a, b) = (floats(a), floats(b));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}: {key} values");
            assert!(a.iter().any(|&x| x != 0.0), "{name}: {key} was randomised");
        }
        // The loaded model computes what the original does.
        let size = cfg.model.vision.image_size;
        let px: Vec<f32> = (0..3 * size * size).map(|i| ((i * 31) % 97) as f32 / 48.0 - 1.0).collect();
        let img = || Tensor::<4>::from_data(TensorData::new(px.clone(), [1, 3, size, size]), &device);
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(vec(model.encode_image(img())), vec(loaded.encode_image(img())), "{name}: image embedding");
        let ctx = cfg.model.text.context_length;
        let mut ids = vec![0i32; ctx];
        ids[..4].copy_from_slice(&[2, 40, 41, 3]);
        let txt = || Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ctx]), &device);
        assert_eq!(vec(model.encode_text(txt())), vec(loaded.encode_text(txt())), "{name}: text embedding");

        // Strict: each key is required, an extra one and a mis-shaped one are refused.
        for key in &keys {
            let err = load_error(cfg, without(&first, key), &device);
            assert!(err.contains(&format!("missing tensor '{key}'")), "{name}: dropping {key}: {err}");
        }
        let mut extra = copy(&first);
        extra.insert("visual.extra", TensorData::new(vec![0f32; 2], [2]));
        let err = load_error(cfg, extra, &device);
        assert!(err.contains("unexpected tensor in the checkpoint") && err.contains("'visual.extra'"), "{err}");
        let mut bent = copy(&first);
        let key = keys.iter().find(|k| k.starts_with("visual.") && k.ends_with(".weight")).unwrap();
        bent.insert(key.as_str(), TensorData::new(vec![0f32; 3], [3]));
        let err = load_error(cfg, bent, &device);
        assert!(err.contains(&format!("tensor '{key}' has shape [3]")), "{name}: {err}");
    }
}
