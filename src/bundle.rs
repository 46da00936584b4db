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
    let mut sd = crate::weights::StateDict::from_safetensors_bytes(bytes)?;
    let mut out = Vec::new();
    for set in &manifest.label_sets {
        let data = sd
            .remove(&set.id)
            .ok_or_else(|| Error::Weights(format!("{LABELS_FILE}: no embeddings for label set \"{}\"", set.id)))?;
        let shape = data.shape().to_vec();
        if shape != [set.classes.len(), manifest.embed_dim] {
            return Err(Error::Weights(format!(
                "{LABELS_FILE}: label set \"{}\" has shape {shape:?}, expected [{}, {}]",
                set.id,
                set.classes.len(),
                manifest.embed_dim
            )));
        }
        let flat =
            data.convert::<f32>().try_to_vec::<f32>().map_err(|e| Error::Weights(format!("{LABELS_FILE}: {e:?}")))?;
        out.push((set.clone(), flat.chunks(manifest.embed_dim).map(<[f32]>::to_vec).collect()));
    }
    Ok(out)
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
    }

    impl Default for ConvertOptions {
        fn default() -> Self {
            ConvertOptions {
                image_weights: WeightFormat::F16,
                text_weights: WeightFormat::F16,
                templates: zero_shot_templates(),
                label_sets: LabelSet::builtin_ids().map(String::from).collect(),
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
            files,
        };
        let json = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Config(e.to_string()))?;
        let path = out.join("manifest.json");
        std::fs::write(&path, json + "\n")
            .map_err(|e| Error::Io { path: path.display().to_string(), message: format!("cannot write: {e}") })?;
        Ok(manifest)
    }
}
