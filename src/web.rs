//! The browser API (wasm32, wasm-bindgen). The page never calls this directly: `www/worker.js`
//! does, inside a Web Worker, and `www/dermlip.js` wraps the worker in the public JS API.
//! Downloading, caching and sha256 checks happen in JavaScript; this side gets verified bytes.

use std::collections::BTreeMap;

use burn::tensor::Device;
#[cfg(feature = "webgpu")]
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::bundle::{self, Manifest};
use crate::config::ModelFileConfig;
use crate::error::{Error, Result};
use crate::input::preprocess::{self, CropBox, Region};
use crate::knowledge::concepts::{ConceptPromptSet, ConceptScore, ConceptScorer};
use crate::knowledge::domain::{DomainCheck, DomainVerdict};
use crate::knowledge::heatmap::{heat_map, HeatMap};
use crate::knowledge::labels::LabelSet;
use crate::knowledge::retrieval::{EmbeddingStore, Hit, ItemKind};
use crate::knowledge::zero_shot::{zero_shot_templates, Prediction, ZeroShotClassifier};
use crate::model::clip::Towers;
use crate::pipeline::{rows_async, DermLip};
use crate::weights::StateDict;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// Browsers cap a tab's memory well below what a 100-MP decode needs next to the model.
const DEFAULT_MAX_MEGAPIXELS: f64 = 40.0;

/// The label set used when a request names none.
/// PAD-UFES-20: smartphone photos, what a patient's photo is; HAM10000 is dermoscopy.
const DEFAULT_LABEL_SET: &str = "pad6";
/// The ontology node whose classes make the page advise a doctor's visit more firmly.
const MALIGNANT: &str = "malignant";

/// Zero-shot classes with their classifier (template-mean text embeddings).
struct ClassSet {
    id: String,
    name: String,
    classifier: ZeroShotClassifier,
    precomputed: bool,
}

/// Where [`Engine::resolve_classes`] put the classes of a request.
enum ClassKey {
    /// `Engine::custom`.
    Custom,
    /// A key of `Engine::sets`.
    Set(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClassifyRequest {
    /// A built-in label set id (`ham7`, …); the default when `labels` is absent.
    label_set: Option<String>,
    labels: Option<Vec<String>>,
    templates: Option<Vec<String>>,
    top_k: Option<usize>,
    /// How many concept tags to return (0: none).
    concepts: Option<usize>,
    /// Only these classes of the label set (a quiz on a subset): their precomputed embeddings,
    /// no text tower; at least two, each in the set.
    only: Option<Vec<String>>,
    /// How many similar cases of a loaded gallery to return (images only; 0 or absent: none).
    similar: Option<usize>,
    /// Which loaded gallery (its name in `setGallery`); may be left out when only one is loaded.
    gallery: Option<String>,
    /// The part of the photo to look at (in its pixels, after EXIF orientation); default: all of it.
    region: Option<Region>,
    /// Also return where the photo agrees with the top class (`heatMap`).
    heat_map: Option<bool>,
}

/// The most similar cases a request may ask for.
const MAX_SIMILAR: usize = 50;
/// Galleries one engine keeps at once (widgets on a page share the engine).
const MAX_GALLERIES: usize = 8;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassifyResult {
    label_set: String,
    label_set_name: String,
    /// The `topK` most probable classes, best first.
    predictions: Vec<Prediction>,
    /// Every class, in the order given.
    labels: Vec<String>,
    probabilities: Vec<f32>,
    concepts: Vec<ConceptScore>,
    /// `precomputed` (from the bundle) or `text-tower` (embedded in this browser).
    label_embeddings: &'static str,
    /// Per class (as `labels`): whether the built-in ontology files it under "malignant" (skin
    /// cancers and pre-cancers). The page advises more firmly when such a class ranks high.
    malignant: Vec<bool>,
    /// The probability of all those classes together.
    malignant_probability: f32,
    /// The part of the photo the model saw (its centre crop), in the photo's pixels.
    crop: CropBox,
    /// Whether the photo looks like skin at all (null when the bundle has no out-of-domain check).
    domain: Option<DomainVerdict>,
    /// The gallery's most similar image cases, best first (when the request asked for them).
    similar: Vec<Hit>,
    /// Where the photo agrees with the top class, over the patch grid (when asked for).
    heat_map: Option<HeatMap>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GallerySummary {
    model: String,
    images: usize,
    captions: usize,
    /// The cosine between this model's and the gallery's embedding of the probe picture.
    probe_cosine: f32,
    /// Every image case's thumbnail path (relative to the gallery file), so that a page can fetch
    /// them all before any search: which ones it shows then reveals nothing about the photo.
    thumbnails: Vec<String>,
}

fn js_err(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
pub struct Engine {
    lip: DermLip,
    backend: &'static str,
    precision: &'static str,
    sets: BTreeMap<String, ClassSet>,
    /// The last custom label list, so a second image with the same labels costs no text pass.
    custom: Option<(Vec<String>, Vec<String>, ClassSet)>,
    concepts: Option<ConceptScorer>,
    /// The is-this-skin check, from the bundle (absent in bundles written before it existed).
    domain: Option<DomainCheck>,
    /// Teachers' case galleries (`dermlip index`) by name, searched for similar cases.
    galleries: BTreeMap<String, EmbeddingStore>,
    max_pixels: u64,
}

/// Makes the device the worker chose (`www/worker.js` `chooseDevice` is the one device-choice
/// policy: which backend to try, in which order, and when to fall back to the CPU). `backend`:
/// `webgpu` or `cpu`; `precision`: `auto` (f16 where the GPU has `shader-f16`, else f32), `f32`,
/// or `f16` (WebGPU with `shader-f16` only). Returns the device with the backend and precision.
async fn device(backend: &str, precision: &str) -> Result<(Device, &'static str, &'static str)> {
    if !matches!(precision, "auto" | "f32" | "f16") {
        return Err(Error::Input(format!("unknown precision \"{precision}\" (expected auto, f32 or f16)")));
    }
    match backend {
        "cpu" if precision == "f16" => Err(Error::Input("f16 needs WebGPU; the CPU backend computes in f32".into())),
        "cpu" => Ok((Device::flex(), "cpu", "f32")),
        "webgpu" => webgpu_device(precision).await,
        other => Err(Error::Input(format!("unknown backend \"{other}\" (expected webgpu, cpu or auto)"))),
    }
}

#[cfg(feature = "webgpu")]
async fn webgpu_device(precision: &str) -> Result<(Device, &'static str, &'static str)> {
    let mut device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| Error::Device(format!("WebGPU is not available: {e:?}")))?;
    let f16 = device.supports_dtype(FloatDType::F16);
    if precision == "f16" && !f16 {
        return Err(Error::Device("this GPU has no shader-f16 support; use f32".into()));
    }
    if precision == "f32" || !f16 {
        return Ok((device, "webgpu", "f32"));
    }
    device.configure(FloatDType::F16).map_err(|e| Error::Device(format!("cannot switch to f16: {e:?}")))?;
    Ok((device, "webgpu", "f16"))
}

/// The CPU-only module (`dermlip_cpu`): a browser without WebGPU downloads only this one.
#[cfg(not(feature = "webgpu"))]
async fn webgpu_device(_precision: &str) -> Result<(Device, &'static str, &'static str)> {
    Err(Error::Device("this is the CPU-only engine (dermlip_cpu.wasm); WebGPU needs dermlip_webgpu.wasm".into()))
}

/// The message of a result with NaN or infinity in it (an f16 overflow), which the worker answers
/// by rebuilding the engine in f32: one definition for Rust and JS.
#[wasm_bindgen(js_name = nonFiniteMessage)]
pub fn non_finite_message() -> String {
    crate::pipeline::NON_FINITE.to_string()
}

/// A built-in label set as the page and the widget list it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuiltinLabelSet {
    id: &'static str,
    name: &'static str,
    /// The short description the page's label-set menu shows.
    title: &'static str,
    classes: &'static [String],
}

/// The built-in label sets (src/knowledge/labels.rs), in their order: `[{id, name, title,
/// classes}]`. The page and the widget list these; they keep no copy of their own.
#[wasm_bindgen(js_name = builtinLabelSets)]
pub fn builtin_label_sets() -> Result<JsValue, JsError> {
    let sets: Vec<BuiltinLabelSet> = LabelSet::all()
        .iter()
        .map(|s| BuiltinLabelSet {
            id: s.id(),
            name: s.name(),
            title: s.title().unwrap_or(s.name()),
            classes: s.classes(),
        })
        .collect();
    sets.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("cannot return the label sets: {e}")))
}

/// The templates used when a request gives none (Derm1M's eight skin templates, `{c}` is the label).
#[wasm_bindgen(js_name = zeroShotTemplates)]
pub fn zero_shot_templates_js() -> Vec<String> {
    zero_shot_templates()
}

/// Whose GPU kernels run the model on WebGPU (benchmarks: before/after): `dermlip` (the default:
/// all of src/model/kernels/), `burn` (Burn's default kernels), or one of dermlip's alone:
/// `linear`, `attention`, `layer-norm`. Applies to the next forward.
#[wasm_bindgen(js_name = setKernels)]
pub fn set_kernels(name: &str) -> Result<(), JsError> {
    let k = crate::model::kernels::Kernels::by_name(name).ok_or_else(|| {
        let names: Vec<&str> = crate::model::kernels::Kernels::NAMES.iter().map(|(n, _)| *n).collect();
        JsError::new(&format!("unknown kernels {name:?} ({})", names.join(", ")))
    })?;
    crate::model::kernels::set_kernels(k);
    Ok(())
}

/// The built-in label set used when a request names none.
#[wasm_bindgen(js_name = defaultLabelSet)]
pub fn default_label_set() -> String {
    DEFAULT_LABEL_SET.to_string()
}

#[wasm_bindgen]
impl Engine {
    /// Builds the model from `open_clip_config.json` text and safetensors bytes: either an image
    /// tower (`towers = "image"`, from a bundle) or a whole open_clip checkpoint (`"both"`).
    /// `text_config_json`: the Hugging Face `config.json` of a BERT text tower dermlip does not
    /// know by name (a bundle's `text-config` file); `None` otherwise.
    pub async fn create(
        backend: String,
        precision: String,
        config_json: String,
        text_config_json: Option<String>,
        weights: Vec<u8>,
        towers: String,
    ) -> Result<Engine, JsError> {
        Self::create_inner(&backend, &precision, &config_json, text_config_json.as_deref(), weights, &towers)
            .await
            .map_err(js_err)
    }

    async fn create_inner(
        backend: &str,
        precision: &str,
        config_json: &str,
        text_config_json: Option<&str>,
        weights: Vec<u8>,
        towers: &str,
    ) -> Result<Engine> {
        let towers = match towers {
            "image" => Towers::Image,
            "both" => Towers::Both,
            other => return Err(Error::Input(format!("towers must be \"image\" or \"both\", not \"{other}\""))),
        };
        let file_config = ModelFileConfig::from_json_strs(config_json, text_config_json)?;
        let weights = StateDict::from_safetensors_bytes(weights)?;
        let (device, backend, precision) = device(backend, precision).await?;
        let lip = DermLip::from_parts_towers(file_config, weights, towers, device)?;
        Ok(Engine {
            lip,
            backend,
            precision,
            sets: BTreeMap::new(),
            custom: None,
            concepts: None,
            domain: None,
            galleries: BTreeMap::new(),
            max_pixels: (DEFAULT_MAX_MEGAPIXELS * 1e6) as u64,
        })
    }

    /// `webgpu` or `cpu`.
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// The precision computed in: `f32` or `f16`.
    pub fn precision(&self) -> String {
        self.precision.to_string()
    }

    #[wasm_bindgen(js_name = hasTextTower)]
    pub fn has_text_tower(&self) -> bool {
        self.lip.towers.has_text()
    }

    #[wasm_bindgen(js_name = embedDim)]
    pub fn embed_dim(&self) -> usize {
        self.lip.config.embed_dim
    }

    #[wasm_bindgen(js_name = setMaxMegapixels)]
    pub fn set_max_megapixels(&mut self, megapixels: f64) -> Result<(), JsError> {
        if !(megapixels.is_finite() && megapixels > 0.0) {
            return Err(JsError::new(&format!("maxMegapixels must be a positive number, not {megapixels}")));
        }
        self.max_pixels = (megapixels * 1e6) as u64;
        Ok(())
    }

    /// Whether the text tower needs a tokenizer file (`tokenizer.json` / `vocab.txt`) first.
    #[wasm_bindgen(js_name = needsTokenizerFile)]
    pub fn needs_tokenizer_file(&self) -> bool {
        matches!(self.lip.tokenizer, crate::input::tokenizer::TextTokenizer::NotLoaded)
    }

    /// The tokenizer file of a BERT text tower, named as in the checkpoint.
    #[wasm_bindgen(js_name = setTokenizer)]
    pub fn set_tokenizer(&mut self, name: String, bytes: Vec<u8>) -> Result<(), JsError> {
        let file = crate::input::tokenizer::wordpiece::TokenizerFile::from_named_bytes(&name, bytes)
            .map_err(|e| js_err(e.into()))?;
        self.lip.set_tokenizer(file).map_err(js_err)
    }

    #[wasm_bindgen(js_name = addTextTower)]
    pub fn add_text_tower(&mut self, weights: Vec<u8>) -> Result<(), JsError> {
        let sd = StateDict::from_safetensors_bytes(weights).map_err(js_err)?;
        self.lip.add_text_tower(sd).map_err(js_err)
    }

    /// The bundle's precomputed label sets (`manifest.json` text + `label-embeddings.safetensors`).
    #[wasm_bindgen(js_name = setLabelEmbeddings)]
    pub fn set_label_embeddings(&mut self, manifest_json: String, bytes: Vec<u8>) -> Result<(), JsError> {
        let manifest = Manifest::from_json(&manifest_json).map_err(js_err)?;
        if manifest.embed_dim != self.lip.config.embed_dim {
            return Err(JsError::new(&format!(
                "the bundle's label embeddings have {} dimensions, the model {}",
                manifest.embed_dim, self.lip.config.embed_dim
            )));
        }
        let (sets, domain) = bundle::read_embeddings(&manifest, bytes).map_err(js_err)?;
        self.domain = domain;
        for (entry, weights) in sets {
            let classifier = ZeroShotClassifier::new(entry.classes, weights).map_err(js_err)?;
            let set = ClassSet { id: entry.id, name: entry.name, classifier, precomputed: true };
            self.sets.insert(set.id.clone(), set);
        }
        Ok(())
    }

    /// A case gallery (a `.dlemb` file written by `dermlip index`) under a name (its URL, say),
    /// checked to be this model's: the gallery's embedding of a fixed probe picture must match
    /// this model's. Replaces a gallery of the same name.
    #[wasm_bindgen(js_name = setGallery)]
    pub async fn set_gallery(&mut self, name: String, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        self.lip.require_image().map_err(js_err)?;
        if !self.galleries.contains_key(&name) && self.galleries.len() >= MAX_GALLERIES {
            return Err(JsError::new(&format!("at most {MAX_GALLERIES} galleries can be loaded at once")));
        }
        let store = EmbeddingStore::from_bytes(&bytes).map_err(js_err)?;
        let probe = self.lip.probe_pixels().map_err(js_err)?;
        let embedding = rows_async(self.lip.encode_pixels(&[probe])).await.map_err(js_err)?.remove(0);
        let probe_cosine = store.check_probe(&embedding).map_err(js_err)?;
        let count = |k: ItemKind| store.items().iter().filter(|i| i.kind == k).count();
        let summary = GallerySummary {
            model: store.model.clone(),
            images: count(ItemKind::Image),
            captions: count(ItemKind::Text),
            probe_cosine,
            thumbnails: store.items().iter().filter_map(|i| i.thumbnail.clone()).collect(),
        };
        if summary.images == 0 {
            return Err(JsError::new("the gallery holds no image cases"));
        }
        self.galleries.insert(name, store);
        summary
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&format!("cannot return the gallery summary: {e}")))
    }

    /// Forgets a loaded gallery.
    #[wasm_bindgen(js_name = clearGallery)]
    pub fn clear_gallery(&mut self, name: String) {
        self.galleries.remove(&name);
    }

    /// The bundle's `concepts.json`.
    #[wasm_bindgen(js_name = setConcepts)]
    pub fn set_concepts(&mut self, json: String) -> Result<(), JsError> {
        let scorer: ConceptScorer =
            serde_json::from_str(&json).map_err(|e| JsError::new(&format!("concepts.json: {e}")))?;
        if scorer.directions.iter().flatten().any(|v| v.len() != self.lip.config.embed_dim) {
            return Err(JsError::new("concepts.json does not match the model's embedding size"));
        }
        self.concepts = Some(scorer);
        Ok(())
    }

    /// Ids of the label sets usable without the text tower.
    #[wasm_bindgen(js_name = precomputedLabelSets)]
    pub fn precomputed_label_sets(&self) -> Vec<String> {
        self.sets.values().filter(|s| s.precomputed).map(|s| s.id.clone()).collect()
    }

    /// Whether `request` (see `classify`) needs the text tower that is not loaded yet.
    #[wasm_bindgen(js_name = needsTextTower)]
    pub fn needs_text_tower(&self, request: JsValue) -> Result<bool, JsError> {
        let req = parse_request(request)?;
        if self.lip.towers.has_text() {
            return Ok(false);
        }
        if req.labels.is_some() || req.templates.is_some() {
            return Ok(true);
        }
        Ok(!self.sets.contains_key(req.label_set_id()) || (req.concepts.unwrap_or(0) > 0 && self.concepts.is_none()))
    }

    /// One forward pass on a blank image, so shader compilation is not paid by the first photo.
    #[wasm_bindgen(js_name = warmUp)]
    pub async fn warm_up(&self) -> Result<(), JsError> {
        let size = self.lip.preprocess.size as usize;
        rows_async(self.lip.encode_pixels(&[vec![0.0; 3 * size * size]])).await.map_err(js_err)?;
        Ok(())
    }

    /// Classifies an image file's bytes (JPEG, PNG, WebP, GIF, BMP).
    pub async fn classify(&mut self, image: Vec<u8>, request: JsValue) -> Result<JsValue, JsError> {
        let req = parse_request(request)?;
        let (pixels, crop) = self.preprocess_bytes(&image, req.region)?;
        self.classify_pixels(pixels, crop, req).await.map_err(js_err)
    }

    /// Classifies raw RGBA pixels (a canvas `ImageData`, a camera frame).
    #[wasm_bindgen(js_name = classifyRgba)]
    pub async fn classify_rgba(
        &mut self,
        rgba: Vec<u8>,
        width: u32,
        height: u32,
        request: JsValue,
    ) -> Result<JsValue, JsError> {
        let req = parse_request(request)?;
        let (pixels, crop) = self.preprocess_rgba(&rgba, width, height, req.region)?;
        self.classify_pixels(pixels, crop, req).await.map_err(js_err)
    }

    /// The image embedding (unnormalised, open_clip `encode_image`).
    #[wasm_bindgen(js_name = embedImage)]
    pub async fn embed_image(&self, image: Vec<u8>) -> Result<Vec<f32>, JsError> {
        let (pixels, _) = self.preprocess_bytes(&image, None)?;
        let mut rows = rows_async(self.lip.encode_pixels(&[pixels])).await.map_err(js_err)?;
        Ok(rows.remove(0))
    }

    #[wasm_bindgen(js_name = embedImageRgba)]
    pub async fn embed_image_rgba(&self, rgba: Vec<u8>, width: u32, height: u32) -> Result<Vec<f32>, JsError> {
        let (pixels, _) = self.preprocess_rgba(&rgba, width, height, None)?;
        let mut rows = rows_async(self.lip.encode_pixels(&[pixels])).await.map_err(js_err)?;
        Ok(rows.remove(0))
    }

    /// Text embeddings (unnormalised, open_clip `encode_text`), flattened row by row.
    #[wasm_bindgen(js_name = embedText)]
    pub async fn embed_text(&self, texts: Vec<String>) -> Result<Vec<f32>, JsError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rows = self.lip.embed_texts_async(&refs).await.map_err(js_err)?;
        Ok(rows.into_iter().flatten().collect())
    }
}

impl ClassifyRequest {
    /// The built-in label set asked for, [`DEFAULT_LABEL_SET`] when none is named.
    fn label_set_id(&self) -> &str {
        self.label_set.as_deref().unwrap_or(DEFAULT_LABEL_SET)
    }
}

/// The classes `only` names, in that order, with the set's embeddings (matched as the set matches
/// names: trimmed, case-insensitive).
fn subset(set: &ClassSet, only: &[String]) -> Result<ZeroShotClassifier> {
    let c = &set.classifier;
    let find = |name: &str| c.labels.iter().position(|l| l.trim().eq_ignore_ascii_case(name.trim()));
    let mut rows: Vec<usize> = Vec::with_capacity(only.len());
    for name in only {
        let i =
            find(name).ok_or_else(|| Error::Input(format!("\"{}\" is not a class of {}", name.trim(), set.name)))?;
        if rows.contains(&i) {
            return Err(Error::Input(format!("\"{}\" is listed twice in `only`", name.trim())));
        }
        rows.push(i);
    }
    if rows.len() < 2 {
        return Err(Error::Input("`only` needs at least two classes".into()));
    }
    ZeroShotClassifier::new(
        rows.iter().map(|&i| c.labels[i].clone()).collect(),
        rows.iter().map(|&i| c.weights[i].clone()).collect(),
    )
}

fn parse_request(request: JsValue) -> Result<ClassifyRequest, JsError> {
    if request.is_undefined() || request.is_null() {
        return Ok(ClassifyRequest::default());
    }
    serde_wasm_bindgen::from_value(request).map_err(|e| JsError::new(&format!("invalid classify options: {e}")))
}

impl Engine {
    fn preprocess_cfg(&self) -> preprocess::PreprocessConfig {
        let mut cfg = self.lip.preprocess.clone();
        cfg.max_pixels = cfg.max_pixels.min(self.max_pixels);
        cfg
    }

    fn preprocess_bytes(&self, image: &[u8], region: Option<Region>) -> Result<(Vec<f32>, CropBox), JsError> {
        self.lip.require_image().map_err(js_err)?;
        let cfg = self.preprocess_cfg();
        let (rgb, crop) = preprocess::crop_rgb_region(image, &cfg, region).map_err(|e| js_err(e.into()))?;
        Ok((preprocess::normalize(&rgb, &cfg), crop))
    }

    fn preprocess_rgba(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        region: Option<Region>,
    ) -> Result<(Vec<f32>, CropBox), JsError> {
        self.lip.require_image().map_err(js_err)?;
        let cfg = self.preprocess_cfg();
        let (rgb, crop) =
            preprocess::crop_rgba_with_box(rgba, width, height, &cfg, region).map_err(|e| js_err(e.into()))?;
        Ok((preprocess::normalize(&rgb, &cfg), crop))
    }

    /// The classes a request asks for, embedding them with the text tower when not precomputed.
    /// Returns where they are kept ([`Engine::class_set`]).
    async fn resolve_classes(&mut self, req: &ClassifyRequest) -> Result<ClassKey> {
        if req.only.is_some() && req.labels.is_some() {
            return Err(Error::Input(
                "`only` picks classes of a label set; with your own `labels`, list just those".into(),
            ));
        }
        if req.labels.is_some() || req.templates.is_some() {
            let labels: Vec<String> = match &req.labels {
                Some(l) => l.iter().map(|s| s.trim().to_string()).collect(),
                None => LabelSet::builtin_or_error(req.label_set_id())?.classes().to_vec(),
            };
            let templates = req.templates.clone().unwrap_or_else(zero_shot_templates);
            let cached = matches!(&self.custom, Some((l, t, _)) if *l == labels && *t == templates);
            if !cached {
                let classifier = self.lip.zero_shot_classifier_async(&labels, &templates).await?;
                let set =
                    ClassSet { id: "custom".into(), name: "Custom labels".into(), classifier, precomputed: false };
                self.custom = Some((labels, templates, set));
            }
            return Ok(ClassKey::Custom);
        }
        let id = req.label_set_id().to_string();
        if !self.sets.contains_key(&id) {
            let set = LabelSet::builtin_or_error(&id)?;
            let classifier = self.lip.zero_shot_classifier_async(set.classes(), &zero_shot_templates()).await?;
            let entry = ClassSet { id: id.clone(), name: set.name().to_string(), classifier, precomputed: false };
            self.sets.insert(id.clone(), entry);
        }
        Ok(ClassKey::Set(id))
    }

    fn class_set(&self, key: &ClassKey) -> &ClassSet {
        match key {
            ClassKey::Custom => &self.custom.as_ref().expect("resolved").2,
            ClassKey::Set(id) => &self.sets[id],
        }
    }

    async fn concept_scorer(&mut self) -> Result<&ConceptScorer> {
        if self.concepts.is_none() {
            let scorer = self
                .lip
                .concept_scorer_async(
                    crate::knowledge::concepts::concepts(),
                    &ConceptPromptSet::monet(),
                    crate::knowledge::concepts::concept_temperature(),
                )
                .await?;
            self.concepts = Some(scorer);
        }
        Ok(self.concepts.as_ref().expect("set above"))
    }

    async fn classify_pixels(&mut self, pixels: Vec<f32>, crop: CropBox, req: ClassifyRequest) -> Result<JsValue> {
        let top_k = req.top_k.unwrap_or(5);
        if top_k == 0 {
            return Err(Error::Input("topK must be at least 1".into()));
        }
        // Classes first: a bad label list fails before the image pass.
        let key = self.resolve_classes(&req).await?;
        let n_concepts = req.concepts.unwrap_or(0);
        if n_concepts > 0 {
            self.concept_scorer().await?;
        }
        let n_similar = req.similar.unwrap_or(0);
        if n_similar > MAX_SIMILAR {
            return Err(Error::Input(format!("similar: at most {MAX_SIMILAR} cases can be asked for")));
        }
        let gallery = match (n_similar, &req.gallery) {
            (0, _) => None,
            (_, Some(name)) => Some(
                self.galleries
                    .get(name)
                    .ok_or_else(|| Error::Input(format!("no gallery \"{name}\" is loaded (loadGallery first)")))?,
            ),
            (_, None) if self.galleries.len() == 1 => self.galleries.values().next(),
            (_, None) if self.galleries.is_empty() => {
                return Err(Error::Input("similar cases need a gallery: load one first (loadGallery)".into()))
            }
            (_, None) => return Err(Error::Input("several galleries are loaded: name one (gallery)".into())),
        };
        let subset = match &req.only {
            Some(only) => Some(subset(self.class_set(&key), only)?),
            None => None,
        };
        let (embedding, patches) = if req.heat_map.unwrap_or(false) {
            let (embedding, patches) = self.lip.encode_pixels_with_patches(pixels);
            (rows_async(embedding).await?.remove(0), Some(rows_async(patches).await?))
        } else {
            (rows_async(self.lip.encode_pixels(&[pixels])).await?.remove(0), None)
        };
        let set = self.class_set(&key);
        let (classifier, name) = match &subset {
            Some(c) => (c, format!("{}, {} of them", set.name, c.labels.len())),
            None => (&set.classifier, set.name.clone()),
        };
        let scored = classifier.classify_all(&embedding, top_k);
        let heat = match &patches {
            Some(p) => {
                let top = &scored.predictions[0];
                Some(heat_map(&top.label, p, &classifier.weights[top.index])?)
            }
            None => None,
        };
        let result = ClassifyResult {
            label_set: set.id.clone(),
            label_set_name: name,
            predictions: scored.predictions,
            labels: classifier.labels.clone(),
            probabilities: scored.probabilities,
            concepts: Vec::new(),
            label_embeddings: if set.precomputed { "precomputed" } else { "text-tower" },
            malignant: Vec::new(),
            malignant_probability: 0.0,
            crop,
            domain: self.domain.as_ref().map(|d| d.check(&embedding, classifier)),
            similar: Vec::new(),
            heat_map: heat,
        };
        let ontology = crate::knowledge::ontology::Ontology::builtin();
        let malignant: Vec<bool> = result.labels.iter().map(|l| ontology.is_under(l, MALIGNANT)).collect();
        let malignant_probability =
            malignant.iter().zip(&result.probabilities).filter(|(m, _)| **m).fold(0.0, |a, (_, p)| a + p).min(1.0);
        let result = ClassifyResult { malignant, malignant_probability, ..result };
        let concepts = match (&self.concepts, n_concepts) {
            (Some(c), n) if n > 0 => c.top(&embedding, n),
            _ => Vec::new(),
        };
        let similar = match gallery {
            Some(g) => g.search(&embedding, n_similar, Some(ItemKind::Image))?,
            None => Vec::new(),
        };
        let result = ClassifyResult { concepts, similar, ..result };
        result
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| Error::Input(format!("cannot return the result: {e}")))
    }
}
