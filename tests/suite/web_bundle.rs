//! `dermlip convert`: the web bundle loads tower by tower, reproduces open_clip's numbers, and its
//! manifest describes its files exactly.

use crate::common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{max_abs_diff, model_dir, reference};
use dermlip::bundle::{self, write_bundle, ConvertOptions, Manifest, WeightFormat};
use dermlip::weights::StateDict;
use dermlip::{DermLip, ModelFileConfig, Towers};
use sha2::{Digest, Sha256};

fn convert(name: &str, image: WeightFormat, text: WeightFormat) -> (PathBuf, Manifest) {
    let out = std::env::temp_dir().join(format!("dermlip-bundle-{name}-{image:?}-{text:?}-{}", std::process::id()));
    let opts = ConvertOptions {
        image_weights: image,
        text_weights: text,
        label_sets: vec!["ham7".into(), "pad6".into()],
        ..ConvertOptions::default()
    };
    let manifest = write_bundle(&model_dir(name), &out, &opts).expect("convert");
    (out, manifest)
}

fn read(dir: &Path, m: &Manifest, role: &str) -> Vec<u8> {
    std::fs::read(dir.join(&m.file(role).unwrap().path)).unwrap()
}

/// Loads a bundle the way the browser does: image tower first, text tower on demand.
fn load_bundle(dir: &Path, m: &Manifest) -> DermLip {
    let config = String::from_utf8(read(dir, m, "config")).unwrap();
    let image = StateDict::from_safetensors_bytes(read(dir, m, "image-tower")).unwrap();
    let mut lip = DermLip::from_parts_towers(
        ModelFileConfig::from_json_str(&config).unwrap(),
        image,
        Towers::Image,
        Device::flex(),
    )
    .unwrap();
    assert!(lip.require_text().is_err(), "the text tower must not be usable before it is added");
    lip.add_text_tower(StateDict::from_safetensors_bytes(read(dir, m, "text-tower")).unwrap()).unwrap();
    lip
}

fn image_embeddings(lip: &DermLip, names: &[String]) -> Vec<Vec<f32>> {
    let bytes: Vec<Vec<u8>> = names.iter().map(|f| std::fs::read(common::fixtures().join(f)).unwrap()).collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    lip.embed_images(&refs).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn f32_bundle_matches_open_clip() {
    let r = reference("tiny-gelu");
    let (dir, m) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let lip = load_bundle(&dir, &m);
    let files: Vec<String> = r.images.iter().take(8).map(|i| i.file.clone()).collect();
    for (got, want) in image_embeddings(&lip, &files).iter().zip(&r.images) {
        assert!(max_abs_diff(got, &want.embedding) < 1e-4, "{}", want.file);
    }
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    for (got, want) in lip.embed_texts(&texts).unwrap().iter().zip(&r.texts) {
        assert!(max_abs_diff(got, &want.embedding) < 1e-4, "{}", want.text);
    }
}

#[test]
fn precomputed_label_embeddings_equal_the_text_tower() {
    let (dir, m) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let lip = load_bundle(&dir, &m);
    let sets = bundle::read_label_embeddings(&m, read(&dir, &m, "label-embeddings")).unwrap();
    assert_eq!(sets.len(), 2);
    for (entry, weights) in sets {
        let set = dermlip::knowledge::labels::LabelSet::builtin(&entry.id).unwrap();
        assert_eq!(entry.classes, set.classes());
        let expected = lip.zero_shot_weights(set.classes(), &m.templates).unwrap();
        assert_eq!(weights.len(), expected.len());
        for (a, b) in weights.iter().zip(&expected) {
            assert!(max_abs_diff(a, b) < 1e-6);
        }
    }
    let scorer: dermlip::knowledge::concepts::ConceptScorer =
        serde_json::from_slice(&read(&dir, &m, "concepts")).expect("concepts.json");
    assert_eq!(scorer.concepts.len(), dermlip::knowledge::concepts::concepts().len());
}

#[test]
fn manifest_lists_every_file_with_size_and_sha256() {
    let (dir, m) = convert("tiny-quickgelu", WeightFormat::F16, WeightFormat::F16);
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert_eq!(Manifest::from_json(&text).unwrap(), m);
    let roles: Vec<&str> = m.files.iter().map(|f| f.role.as_str()).collect();
    assert_eq!(roles, ["config", "image-tower", "text-tower", "label-embeddings", "concepts"]);
    for f in &m.files {
        let bytes = std::fs::read(dir.join(&f.path)).unwrap();
        assert_eq!(bytes.len() as u64, f.bytes, "{}", f.path);
        assert_eq!(format!("{:x}", Sha256::digest(&bytes)), f.sha256, "{}", f.path);
    }
    // The image tower holds exactly the visual tensors and logit_scale.
    let image = StateDict::from_safetensors_bytes(read(&dir, &m, "image-tower")).unwrap();
    assert!(image.keys().all(|k| Towers::image_key(k)));
    assert!(image.keys().any(|k| k == "logit_scale"));
    let text = StateDict::from_safetensors_bytes(read(&dir, &m, "text-tower")).unwrap();
    assert!(text.keys().all(|k| !Towers::image_key(k)));
}

#[test]
fn f16_and_int8_bundles_stay_close_and_are_smaller() {
    let r = reference("tiny-gelu");
    let files: Vec<String> = r.images.iter().map(|i| i.file.clone()).collect();
    let (d32, m32) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let exact = image_embeddings(&load_bundle(&d32, &m32), &files);
    for (format, min_cos) in [(WeightFormat::F16, 0.9999), (WeightFormat::Int8, 0.99)] {
        let (dir, m) = convert("tiny-gelu", format, WeightFormat::F16);
        assert!(m.file("image-tower").unwrap().bytes < m32.file("image-tower").unwrap().bytes, "{format:?}");
        let got = image_embeddings(&load_bundle(&dir, &m), &files);
        let worst = got.iter().zip(&exact).map(|(a, b)| cosine(a, b)).fold(1.0, f32::min);
        assert!(worst > min_cos, "{format:?}: worst cosine {worst}");
    }
}

#[test]
fn int8_round_trip_is_within_half_a_step() {
    let values: Vec<f32> = (0..64 * 80).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
    let mut sd = std::collections::BTreeMap::new();
    sd.insert("w".to_string(), burn::tensor::TensorData::new(values.clone(), [64, 80]));
    sd.insert("b".to_string(), burn::tensor::TensorData::new(vec![0.5f32; 80], [80]));
    let bytes = StateDict::from_tensors(sd).quantize_int8().to_safetensors_bytes().unwrap();
    let back = StateDict::from_safetensors_bytes(bytes).unwrap();
    assert_eq!(back.len(), 2, "scales are folded back in");
    let w: Vec<f32> = back.get("w").unwrap().clone().try_to_vec().unwrap();
    for (row, (a, b)) in w.chunks(80).zip(values.chunks(80)).enumerate() {
        let step = b.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        assert!(max_abs_diff(a, b) <= step / 2.0 + 1e-6, "row {row}");
    }
    let bias: Vec<f32> = back.get("b").unwrap().clone().try_to_vec().unwrap();
    assert_eq!(bias, vec![0.5; 80], "small tensors stay float");
}

#[test]
fn bad_manifests_are_refused() {
    let (dir, _) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let err = Manifest::from_json(&text.replace("\"version\": 1", "\"version\": 99")).unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
    let err = Manifest::from_json(&text.replace("dermlip-web-bundle", "other")).unwrap_err();
    assert!(err.to_string().contains("format"), "{err}");
    assert!(Manifest::from_json("{").is_err());
    let err = Manifest::from_json(&text.replace("\"image-tower\"", "\"x\"")).unwrap_err();
    assert!(err.to_string().contains("image-tower"), "{err}");
}

#[test]
fn label_embeddings_must_match_the_manifest() {
    let (dir, m) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let mut wrong = m.clone();
    wrong.label_sets[0].classes.pop();
    let err = bundle::read_label_embeddings(&wrong, read(&dir, &m, "label-embeddings")).unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
}

#[test]
fn panderm_bundle_carries_its_tokenizer_and_matches_pytorch() {
    #[derive(serde::Deserialize)]
    struct Text {
        text: String,
        embedding: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Reference {
        texts: Vec<Text>,
    }
    let r: Reference =
        serde_json::from_str(&std::fs::read_to_string(common::fixtures().join("panderm/reference.json")).unwrap())
            .unwrap();
    let (dir, m) = convert("tiny-panderm", WeightFormat::F32, WeightFormat::F32);
    let tokenizer = m.file("tokenizer").expect("a tokenizer file in the bundle");
    assert_eq!(tokenizer.path, "tokenizer.json");
    let text_config = m.file("text-config").expect("the BERT config.json");

    // As the browser does: config (+ BERT config) and image tower, then tokenizer and text tower.
    let config = String::from_utf8(read(&dir, &m, "config")).unwrap();
    let bert = String::from_utf8(std::fs::read(dir.join(&text_config.path)).unwrap()).unwrap();
    let image = StateDict::from_safetensors_bytes(read(&dir, &m, "image-tower")).unwrap();
    let mut lip = DermLip::from_parts_towers(
        ModelFileConfig::from_json_strs(&config, Some(&bert)).unwrap(),
        image,
        Towers::Image,
        Device::flex(),
    )
    .unwrap();
    let tok = dermlip::input::tokenizer::wordpiece::TokenizerFile::from_named_bytes(
        "tokenizer.json",
        read(&dir, &m, "tokenizer"),
    )
    .unwrap();
    lip.set_tokenizer(tok).unwrap();
    lip.add_text_tower(StateDict::from_safetensors_bytes(read(&dir, &m, "text-tower")).unwrap()).unwrap();
    let texts: Vec<&str> = r.texts.iter().map(|t| t.text.as_str()).collect();
    for (got, want) in lip.embed_texts(&texts).unwrap().iter().zip(&r.texts) {
        assert!(max_abs_diff(got, &want.embedding) < 1e-4, "{}", want.text);
    }
    let sets = bundle::read_label_embeddings(&m, read(&dir, &m, "label-embeddings")).unwrap();
    let expected = lip.zero_shot_weights(&sets[0].0.classes, &m.templates).unwrap();
    for (a, b) in sets[0].1.iter().zip(&expected) {
        assert!(max_abs_diff(a, b) < 1e-6);
    }
}

/// Drives a future to completion on this thread (flex readback is ready at once).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

#[test]
fn the_browser_engines_async_text_path_equals_the_native_one() {
    use dermlip::knowledge::concepts::ConceptPromptSet;
    use dermlip::knowledge::labels::{self, LabelSet};
    for name in ["tiny-gelu", "tiny-panderm"] {
        let lip = DermLip::load(&model_dir(name), Device::flex()).unwrap();
        let set = LabelSet::builtin("pad6").unwrap();
        let templates: Vec<String> = labels::ZERO_SHOT_TEMPLATES.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            block_on(lip.zero_shot_weights_async(set.classes(), &templates)).unwrap(),
            lip.zero_shot_weights(set.classes(), &templates).unwrap(),
            "{name}"
        );
        let (concepts, prompts, t) = (
            dermlip::knowledge::concepts::concepts(),
            ConceptPromptSet::monet(),
            dermlip::knowledge::concepts::concept_temperature(),
        );
        assert_eq!(
            block_on(lip.concept_scorer_async(concepts, &prompts, t)).unwrap(),
            lip.concept_scorer(concepts, &prompts, t).unwrap(),
            "{name}"
        );
        let twice = ["nevus".to_string(), "nevus".to_string()];
        let err = block_on(lip.zero_shot_weights_async(&twice, &templates)).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
        assert!(block_on(lip.embed_texts_async(&[])).unwrap().is_empty());
    }
}

/// The site's default bundle (www/models/default/) is committed, so serving the site needs no
/// native build; it must be what `dermlip convert` writes from the fixture model today, up to the
/// last bits of its embeddings, which depend on the CPU.
#[test]
fn the_committed_default_bundle_is_current() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/default");
    let out = std::env::temp_dir().join(format!("dermlip-default-bundle-{}", std::process::id()));
    let opts = ConvertOptions {
        image_weights: WeightFormat::F32,
        text_weights: WeightFormat::F32,
        model_card: Some(bundle::ModelCard::fixture("tiny-gelu")),
        ..ConvertOptions::default()
    };
    let manifest = write_bundle(&model_dir("tiny-gelu"), &out, &opts).expect("convert");
    let regenerate = "regenerate it: cargo run --bin dermlip -- convert --model tests/fixtures/models/tiny-gelu \
                      --out www/models/default --image-weights f32 --text-weights f32 --fixture";
    let json = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    let mut names: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
    for name in &names {
        let ours = std::fs::read(out.join(name)).unwrap();
        let theirs = std::fs::read(committed.join(name))
            .unwrap_or_else(|e| panic!("www/models/default/{name}: {e}; {regenerate}"));
        // The label and concept embeddings are model outputs: their last bits depend on the CPU.
        let same = if ours == theirs {
            Ok(())
        } else if name.ends_with(".safetensors") {
            common::safetensors_close(&ours, &theirs)
        } else if name.ends_with(".json") {
            common::json_close(&json(&ours), &json(&theirs), name)
        } else {
            Err("the bytes differ".into())
        };
        if let Err(e) = same {
            panic!("www/models/default/{name} differs from a fresh conversion ({e}); {regenerate}");
        }
    }
    // The manifest: as a fresh one, except each file's size and hash, which must describe the
    // committed file (the page checks them on download).
    let (mut ours, mut theirs) = (
        json(&std::fs::read(out.join("manifest.json")).unwrap()),
        json(&std::fs::read(committed.join("manifest.json")).unwrap()),
    );
    for f in theirs["files"].as_array_mut().unwrap() {
        let bytes = std::fs::read(committed.join(f["path"].as_str().unwrap())).unwrap();
        let described = f["bytes"] == bytes.len() && f["sha256"] == format!("{:x}", Sha256::digest(&bytes));
        assert!(
            described,
            "www/models/default/manifest.json: the size or hash of {} is wrong; {regenerate}",
            f["path"]
        );
    }
    for m in [&mut ours, &mut theirs] {
        m["files"].as_array_mut().unwrap().iter_mut().for_each(|f| {
            let f = f.as_object_mut().unwrap();
            f.remove("bytes");
            f.remove("sha256");
        });
    }
    if let Err(e) = common::json_close(&ours, &theirs, "manifest.json") {
        panic!("www/models/default/manifest.json differs from a fresh conversion ({e}); {regenerate}");
    }
    names.push("manifest.json".into());
    let mut listed: Vec<String> =
        std::fs::read_dir(&committed).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    listed.sort();
    names.sort();
    assert_eq!(listed, names, "www/models/default/ holds other files than the bundle; {regenerate}");
    std::fs::remove_dir_all(&out).ok();
}

/// The released checkpoints' model cards (data/model-cards/, passed by `scripts/run.sh`) parse as
/// `dermlip convert --model-card` reads them, name built-in label sets, and carry the same paper
/// figures as the site's model card page (www/model-card.html), which shows them without a bundle.
#[test]
fn the_released_model_cards_parse_and_agree_with_the_model_card_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let html = std::fs::read_to_string(root.join("www/model-card.html")).unwrap();
    let rows = [("HAM10000", "ham7"), ("PAD-UFES-20", "pad6"), ("Fitzpatrick17k", "f17k"), ("Daffodil", "daffodil5")];
    for (column, file) in
        [(0, "redlessone--DermLIP_ViT-B-16.json"), (1, "redlessone--DermLIP_PanDerm-base-w-PubMed-256.json")]
    {
        let text = std::fs::read_to_string(root.join("data/model-cards").join(file)).unwrap();
        let card = bundle::ModelCard::from_json(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(card.is_real(), "{file}: weights must be \"real\"");
        assert_eq!(card.accuracy.len(), rows.len(), "{file}");
        for (name, set) in rows {
            let a = card
                .accuracy
                .iter()
                .find(|a| a.label_set.as_deref() == Some(set))
                .unwrap_or_else(|| panic!("{file}: no {set}"));
            assert!(
                dermlip::knowledge::labels::LabelSet::builtin(set).is_some(),
                "{file}: {set} is not a built-in set"
            );
            let row =
                html.split(&format!("<th scope=\"row\">{name}</th>")).nth(1).unwrap_or_else(|| panic!("no {name} row"));
            let cells: Vec<&str> =
                // `<td …>value</td>` cells; the first may carry a `data-i18n` attribute.
                row.split("<td").skip(1).map(|c| c.split_once('>').unwrap().1.split("</td>").next().unwrap()).take(4).collect();
            let page: f64 = cells[2 + column].parse().unwrap();
            assert!((page - a.value).abs() < 1e-9, "{file}: {name} is {} in the card, {page} on the page", a.value);
        }
    }
}

/// The bundle's out-of-domain prompt embeddings are the text tower's, and a bundle without them
/// (written before the check existed) or with other prompts has no check rather than a wrong one.
#[test]
fn the_bundle_carries_the_out_of_domain_check() {
    use dermlip::knowledge::domain::{self, OTHER_PROMPTS, SKIN_PROMPTS};
    let (dir, m) = convert("tiny-gelu", WeightFormat::F32, WeightFormat::F32);
    let prompts = m.domain.clone().expect("the manifest lists the prompts");
    assert_eq!((prompts.skin.clone(), prompts.other.clone()), domain::prompts());
    let lip = load_bundle(&dir, &m);
    let native = lip.domain_check().unwrap();
    let (_, from_bundle) = bundle::read_embeddings(&m, read(&dir, &m, "label-embeddings")).unwrap();
    let from_bundle = from_bundle.expect("a check");
    assert_eq!(from_bundle.skin_rows().len(), SKIN_PROMPTS.len());
    assert_eq!(from_bundle.other_rows().len(), OTHER_PROMPTS.len());
    for (a, b) in from_bundle
        .skin_rows()
        .iter()
        .chain(from_bundle.other_rows())
        .zip(native.skin_rows().iter().chain(native.other_rows()))
    {
        assert!(max_abs_diff(a, b) < 1e-6);
    }
    // Each prompt row is the text tower's embedding of the bare prompt, normalised.
    let raw = lip.embed_texts(&[SKIN_PROMPTS[0], OTHER_PROMPTS[0]]).unwrap();
    let norm = |v: &[f32]| {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    assert!(max_abs_diff(&norm(&raw[0]), &from_bundle.skin_rows()[0]) < 1e-6);
    assert!(max_abs_diff(&norm(&raw[1]), &from_bundle.other_rows()[0]) < 1e-6);

    let mut old = m.clone();
    old.domain = None;
    assert!(bundle::read_embeddings(&old, read(&dir, &m, "label-embeddings")).unwrap().1.is_none());
    let mut other = m.clone();
    other.domain.as_mut().unwrap().other[0] = "a photo of a teapot".into();
    assert!(bundle::read_embeddings(&other, read(&dir, &m, "label-embeddings")).unwrap().1.is_none());
    let old_json = serde_json::to_string(&old).unwrap();
    assert!(!old_json.contains("\"domain\""), "absent, not null, in older bundles' manifests");
}
