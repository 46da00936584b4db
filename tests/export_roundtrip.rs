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
