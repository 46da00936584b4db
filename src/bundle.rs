//! The web bundle: what `dermlip convert` writes and the browser loads. One directory with
//!
//! - `manifest.json` — format version, model summary, and every other file with its size and sha256;
//! - `open_clip_config.json` — the checkpoint's config, unchanged;
//! - `image.safetensors` — the image tower (`visual.*` and `logit_scale`), f32, f16 or int8;
//! - `text.safetensors` — the text tower, fetched only for custom labels;
//! - `label-embeddings.safetensors` — one `[classes, embed_dim]` f32 tensor per built-in label set
//!   (zero-shot class weights: template mean, re-normalised), so built-in sets need no text tower;
//! - `concepts.json` — the precomputed clinical-concept scorer;
//! - for a BERT text tower (PanDerm + PubMedBERT): its `tokenizer.json` or `vocab.txt`, fetched
//!   with the text tower, and its Hugging Face `config.json` when the checkpoint has one.
//!
//! The manifest may also carry a [`ModelCard`]: what the bundle serves (name, source, licence,
//! real weights or a test fixture, the paper's accuracy). Every part of it is optional; a bundle
//! without one is "unknown", which the page treats as not verified.
//!
//! The format is documented in `docs/web-bundle.md`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const FORMAT: &str = "dermlip-web-bundle";
pub const VERSION: u32 = 1;

pub const CONFIG_FILE: &str = "open_clip_config.json";
pub const IMAGE_FILE: &str = "image.safetensors";
pub const TEXT_FILE: &str = "text.safetensors";
pub const LABELS_FILE: &str = "label-embeddings.safetensors";
pub const CONCEPTS_FILE: &str = "concepts.json";

/// How the tower weights are stored. Compute is f32 in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    F32,
    F16,
    /// Per-row symmetric int8 for matrices (and convolution kernels) of at least
    /// [`crate::weights::INT8_MIN_ELEMENTS`] values, dequantised to f32 when loaded; the rest f16.
    Int8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    /// `config`, `image-tower`, `text-tower`, `label-embeddings`, `concepts`, `tokenizer` or
    /// `text-config`.
    pub role: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelSetEntry {
    pub id: String,
    pub name: String,
    pub classes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Free text, e.g. the source checkpoint's directory name.
    pub model: String,
    pub embed_dim: usize,
    pub image_weights: WeightFormat,
    pub text_weights: WeightFormat,
    /// The templates the label embeddings were built with.
    pub templates: Vec<String>,
    pub label_sets: Vec<LabelSetEntry>,
    pub files: Vec<FileEntry>,
    /// The out-of-domain check's prompts ([`crate::knowledge::domain`]), whose embeddings are in
    /// `label-embeddings.safetensors` as `domain.skin` and `domain.other`; absent in bundles
    /// written before the check existed (then the page skips it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainPrompts>,
    /// What the bundle serves; absent in bundles written before it existed (then "unknown").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_card: Option<ModelCard>,
}

/// The prompt lists a bundle's out-of-domain embeddings were made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DomainPrompts {
    pub skin: Vec<String>,
    pub other: Vec<String>,
}

pub const DOMAIN_SKIN_KEY: &str = "domain.skin";
pub const DOMAIN_OTHER_KEY: &str = "domain.other";

/// Whether a bundle's weights are a trained model or a test fixture (random weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsKind {
    /// Trained weights (e.g. the released DermLIP checkpoints).
    Real,
    /// Random or made-up weights for tests: every result is meaningless.
    Fixture,
}

/// One accuracy figure the bundle's model is expected to reach, with where it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyFigure {
    /// The benchmark, e.g. "HAM10000 (7 classes), zero-shot".
    pub benchmark: String,
    /// The built-in label set it was measured with, when there is one (e.g. `ham7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_set: Option<String>,
    /// The metric, e.g. "accuracy".
    pub metric: String,
    /// A fraction in [0, 1].
    pub value: f64,
    /// Where the figure is published.
    pub reference: String,
}

/// What a bundle serves (`model_card` in `manifest.json`). Every field is optional: a missing
/// field is "unknown", and a bundle whose `weights` is not `real` is not verified.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Human-readable name, e.g. "DermLIP ViT-B/16".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the weights come from, e.g. "hf-hub:redlessone/DermLIP_ViT-B-16".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The weights' licence, e.g. "CC BY-NC 4.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// `real` or `fixture`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<WeightsKind>,
    /// Expected accuracy from the paper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy: Vec<AccuracyFigure>,
}

impl ModelCard {
    /// The keys a model-card file may have (`dermlip convert --model-card FILE`).
    pub const KEYS: [&'static str; 5] = ["name", "source", "licence", "weights", "accuracy"];

    /// Parses a model-card file strictly: unknown keys, a `weights` other than `real`/`fixture`
    /// and accuracy values outside [0, 1] are refused, so a typo cannot pass silently.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("model card: {e}")))?;
        let object = value.as_object().ok_or_else(|| Error::Config("model card: expected a JSON object".into()))?;
        if let Some(key) = object.keys().find(|k| !Self::KEYS.contains(&k.as_str())) {
            return Err(Error::Config(format!(
                "model card: unknown key \"{key}\" (expected {})",
                Self::KEYS.join(", ")
            )));
        }
        let card: ModelCard = serde_json::from_value(value).map_err(|e| Error::Config(format!("model card: {e}")))?;
        for a in &card.accuracy {
            if !(0.0..=1.0).contains(&a.value) {
                return Err(Error::Config(format!(
                    "model card: accuracy {} for \"{}\" is not a fraction in [0, 1]",
                    a.value, a.benchmark
                )));
            }
        }
        Ok(card)
    }

    /// The card of a test fixture: random weights, named after its directory.
    pub fn fixture(dir_name: &str) -> Self {
        ModelCard {
            name: Some(format!("{dir_name} (test fixture)")),
            source: Some(format!("test fixture {dir_name}: random weights made for this project's tests")),
            licence: None,
            weights: Some(WeightsKind::Fixture),
            accuracy: Vec::new(),
        }
    }

    /// True only for a card that says its weights are real.
    pub fn is_real(&self) -> bool {
        self.weights == Some(WeightsKind::Real)
    }
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Self> {
        let m: Manifest = serde_json::from_str(text).map_err(|e| Error::Config(format!("manifest.json: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::Config(format!("manifest.json: format is \"{}\", expected \"{FORMAT}\"", m.format)));
        }
        if m.version != VERSION {
            return Err(Error::Config(format!(
                "manifest.json: bundle version {} is not supported (this build reads version {VERSION})",
                m.version
            )));
        }
        for role in ["config", "image-tower"] {
            if m.file(role).is_none() {
                return Err(Error::Config(format!("manifest.json: no file with role \"{role}\"")));
            }
        }
        Ok(m)
    }

    pub fn file(&self, role: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.role == role)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Reads `label-embeddings.safetensors` against the manifest's label sets: `(entry, class weights)`.
pub fn read_label_embeddings(manifest: &Manifest, bytes: Vec<u8>) -> Result<Vec<(LabelSetEntry, Vec<Vec<f32>>)>> {
    Ok(read_embeddings(manifest, bytes)?.0)
}

/// [`read_label_embeddings`] and the out-of-domain check, when the bundle has one. A bundle whose
/// prompts are not this build's ([`crate::knowledge::domain`]) has none: its embeddings would be
/// read against the wrong prompts.
#[allow(clippy::type_complexity)]
pub fn read_embeddings(
    manifest: &Manifest,
    bytes: Vec<u8>,
) -> Result<(Vec<(LabelSetEntry, Vec<Vec<f32>>)>, Option<crate::knowledge::domain::DomainCheck>)> {
    let mut sd = crate::weights::StateDict::from_safetensors_bytes(bytes)?;
    // One `[n, embed_dim]` tensor as rows; `what` names it in errors.
    let mut rows = |key: &str, what: &str, n: usize| -> Result<Vec<Vec<f32>>> {
        let data = sd.remove(key).ok_or_else(|| Error::Weights(format!("{LABELS_FILE}: no embeddings for {what}")))?;
        let shape = data.shape().to_vec();
        if shape != [n, manifest.embed_dim] {
            return Err(Error::Weights(format!(
                "{LABELS_FILE}: {what} has shape {shape:?}, expected [{n}, {}]",
                manifest.embed_dim
            )));
        }
        let flat =
            data.convert::<f32>().try_to_vec::<f32>().map_err(|e| Error::Weights(format!("{LABELS_FILE}: {e:?}")))?;
        Ok(flat.chunks(manifest.embed_dim).map(<[f32]>::to_vec).collect())
    };
    let domain = match &manifest.domain {
        Some(p) if (p.skin.clone(), p.other.clone()) == crate::knowledge::domain::prompts() => {
            let skin = rows(DOMAIN_SKIN_KEY, "the out-of-domain skin prompts", p.skin.len())?;
            let other = rows(DOMAIN_OTHER_KEY, "the out-of-domain other prompts", p.other.len())?;
            Some(crate::knowledge::domain::DomainCheck::new(skin, other)?)
        }
        _ => None,
    };
    let mut out = Vec::new();
    for set in &manifest.label_sets {
        let weights = rows(&set.id, &format!("label set \"{}\"", set.id), set.classes.len())?;
        out.push((set.clone(), weights));
    }
    Ok((out, domain))
}

#[cfg(not(target_family = "wasm"))]
pub use writer::{write_bundle, ConvertOptions};

#[cfg(not(target_family = "wasm"))]
mod writer {
    use std::collections::BTreeMap;
    use std::path::Path;

    use burn::tensor::{DType, TensorData};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::config::{ModelFileConfig, TextArch};
    use crate::input::tokenizer::wordpiece::TokenizerFile;
    use crate::knowledge::concepts::ConceptPromptSet;
    use crate::knowledge::labels::LabelSet;
    use crate::knowledge::zero_shot::zero_shot_templates;
    use crate::model::clip::Towers;
    use crate::pipeline::DermLip;
    use crate::weights::StateDict;

    pub struct ConvertOptions {
        pub image_weights: WeightFormat,
        pub text_weights: WeightFormat,
        pub templates: Vec<String>,
        /// Built-in label set ids to precompute; all of them by default.
        pub label_sets: Vec<String>,
        /// What the bundle serves, written to the manifest as `model_card` (none by default:
        /// "unknown").
        pub model_card: Option<ModelCard>,
    }

    impl Default for ConvertOptions {
        fn default() -> Self {
            ConvertOptions {
                image_weights: WeightFormat::F16,
                text_weights: WeightFormat::F16,
                templates: zero_shot_templates(),
                label_sets: LabelSet::builtin_ids().map(String::from).collect(),
                model_card: None,
            }
        }
    }

    fn store(sd: StateDict, format: WeightFormat) -> StateDict {
        match format {
            WeightFormat::F32 => sd.convert_floats(DType::F32),
            WeightFormat::F16 => sd.convert_floats(DType::F16),
            WeightFormat::Int8 => sd.quantize_int8().convert_floats(DType::F16),
        }
    }

    fn write(dir: &Path, name: &str, role: &str, bytes: &[u8]) -> Result<FileEntry> {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::Io { path: path.display().to_string(), message: format!("cannot write: {e}") })?;
        Ok(FileEntry {
            path: name.to_string(),
            role: role.to_string(),
            bytes: bytes.len() as u64,
            sha256: format!("{:x}", Sha256::digest(bytes)),
        })
    }

    /// Converts an open_clip checkpoint into a web bundle in `out` (created if missing). The
    /// label and concept embeddings are computed with the weights as stored in the bundle, so the
    /// browser's results equal a native run on the same (rounded) weights.
    pub fn write_bundle(model_dir: &Path, out: &Path, opts: &ConvertOptions) -> Result<Manifest> {
        let (dir, weights_path) = crate::checkpoint::locate(model_dir)?;
        let config_path = dir.join(CONFIG_FILE);
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::Io { path: config_path.display().to_string(), message: e.to_string() })?;
        let file_config = ModelFileConfig::from_checkpoint_dir(&dir)?;
        // A BERT text tower brings its tokenizer file and, for unknown BERTs, its config.json.
        let mut extra: Vec<(String, &str, Vec<u8>)> = Vec::new();
        if let TextArch::Bert(bert) = &file_config.model.text.arch {
            if let Some(tok) = &bert.tokenizer {
                let (name, bytes) = match tok {
                    TokenizerFile::Json(b) => ("tokenizer.json", b.clone()),
                    TokenizerFile::VocabTxt(t) => ("vocab.txt", t.clone().into_bytes()),
                };
                extra.push((name.to_string(), "tokenizer", bytes));
            }
            let hf_config = dir.join("config.json");
            if hf_config.is_file() {
                let bytes = std::fs::read(&hf_config)
                    .map_err(|e| Error::Io { path: hf_config.display().to_string(), message: e.to_string() })?;
                extra.push(("config.json".to_string(), "text-config", bytes));
            }
        }

        let mut all = StateDict::from_file(&weights_path)?;
        let image = store(all.split_off(Towers::image_key), opts.image_weights);
        let text = store(all, opts.text_weights);
        let image_bytes = image.to_safetensors_bytes()?;
        let text_bytes = text.to_safetensors_bytes()?;

        // The model as the browser will see it.
        let mut lip = DermLip::from_parts_towers(
            file_config.clone(),
            StateDict::from_safetensors_bytes(image_bytes.clone())?,
            Towers::Image,
            burn::tensor::Device::flex(),
        )?;
        lip.add_text_tower(StateDict::from_safetensors_bytes(text_bytes.clone())?)?;

        let mut sets = Vec::new();
        let mut tensors = BTreeMap::new();
        for id in &opts.label_sets {
            let set = LabelSet::builtin_or_error(id)?;
            let classifier = lip.zero_shot_classifier(set.classes(), &opts.templates)?;
            let flat: Vec<f32> = classifier.weights.iter().flatten().copied().collect();
            tensors.insert(id.clone(), TensorData::new(flat, [classifier.len(), lip.config.embed_dim]));
            sets.push(LabelSetEntry { id: id.clone(), name: set.name().to_string(), classes: set.classes().to_vec() });
        }
        let domain = lip.domain_check()?;
        let (skin, other) = crate::knowledge::domain::prompts();
        for (key, rows) in [(DOMAIN_SKIN_KEY, domain.skin_rows()), (DOMAIN_OTHER_KEY, domain.other_rows())] {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            tensors.insert(key.to_string(), TensorData::new(flat, [rows.len(), lip.config.embed_dim]));
        }
        let scorer = lip.concept_scorer(
            crate::knowledge::concepts::concepts(),
            &ConceptPromptSet::monet(),
            crate::knowledge::concepts::concept_temperature(),
        )?;
        let concepts_json = serde_json::to_vec(&scorer).map_err(|e| Error::Config(e.to_string()))?;

        std::fs::create_dir_all(out)
            .map_err(|e| Error::Io { path: out.display().to_string(), message: format!("cannot create: {e}") })?;
        let mut files = vec![
            write(out, CONFIG_FILE, "config", config_text.as_bytes())?,
            write(out, IMAGE_FILE, "image-tower", &image_bytes)?,
            write(out, TEXT_FILE, "text-tower", &text_bytes)?,
            write(out, LABELS_FILE, "label-embeddings", &StateDict::from_tensors(tensors).to_safetensors_bytes()?)?,
            write(out, CONCEPTS_FILE, "concepts", &concepts_json)?,
        ];
        for (name, role, bytes) in &extra {
            files.push(write(out, name, role, bytes)?);
        }
        let name = std::fs::canonicalize(model_dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            model: name,
            embed_dim: lip.config.embed_dim,
            image_weights: opts.image_weights,
            text_weights: opts.text_weights,
            templates: opts.templates.clone(),
            label_sets: sets,
            domain: Some(DomainPrompts { skin, other }),
            files,
            model_card: opts.model_card.clone(),
        };
        let json = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Config(e.to_string()))?;
        let path = out.join("manifest.json");
        std::fs::write(&path, json + "\n")
            .map_err(|e| Error::Io { path: path.display().to_string(), message: format!("cannot write: {e}") })?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"format":"dermlip-web-bundle","version":1,"model":"m","embed_dim":2,
        "image_weights":"f32","text_weights":"f16","templates":[],"label_sets":[],
        "files":[{"path":"c","role":"config","bytes":1,"sha256":"x"},{"path":"i","role":"image-tower","bytes":1,"sha256":"y"}]}"#;

    #[test]
    fn a_manifest_without_a_model_card_still_loads_as_unknown() {
        let m = Manifest::from_json(OLD).unwrap();
        assert_eq!(m.model_card, None);
        // Written back, it stays without one.
        assert!(!serde_json::to_string(&m).unwrap().contains("model_card"));
    }

    #[test]
    fn a_model_card_round_trips_through_the_manifest() {
        let mut m = Manifest::from_json(OLD).unwrap();
        m.model_card = Some(ModelCard::fixture("tiny"));
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""weights":"fixture""#), "{text}");
        let back = Manifest::from_json(&text).unwrap();
        assert_eq!(back.model_card, m.model_card);
        assert!(!back.model_card.unwrap().is_real());
    }

    #[test]
    fn a_manifest_reader_ignores_card_fields_it_does_not_know() {
        let text = OLD.replacen("\"model\":\"m\"", r#""model":"m","model_card":{"weights":"real","future":1}"#, 1);
        let m = Manifest::from_json(&text).unwrap();
        assert!(m.model_card.unwrap().is_real());
    }

    #[test]
    fn a_model_card_file_is_parsed_strictly() {
        let card = ModelCard::from_json(
            r#"{"name":"DermLIP","licence":"CC BY-NC 4.0","weights":"real",
                "accuracy":[{"benchmark":"HAM10000","label_set":"ham7","metric":"accuracy","value":0.5,"reference":"paper"}]}"#,
        )
        .unwrap();
        assert!(card.is_real());
        assert_eq!(card.accuracy[0].label_set.as_deref(), Some("ham7"));
        let err = |t: &str| ModelCard::from_json(t).unwrap_err().to_string();
        assert!(err(r#"{"licenSe":"x"}"#).contains("unknown key \"licenSe\""));
        assert!(err(r#"{"weights":"maybe"}"#).contains("model card"));
        assert!(err(r#"{"accuracy":[{"benchmark":"b","metric":"m","value":68.2,"reference":"r"}]}"#).contains("[0, 1]"));
        assert!(err("[]").contains("JSON object"));
        assert_eq!(ModelCard::from_json("{}").unwrap(), ModelCard::default());
    }
}
