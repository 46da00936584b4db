//! A loaded model with its tokenizer and preprocessing: what the CLI, the browser API and the
//! evaluation code call. Tensor work stays on the device; only embeddings are read back.

use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{ClipConfig, ModelFileConfig, TextArch};
use crate::error::{Error, Result};
use crate::input::preprocess::{self, PreprocessConfig};
use crate::input::tokenizer::wordpiece::TokenizerFile;
use crate::input::tokenizer::{text_pad_id, TextIds, TextTokenizer};
use crate::knowledge::concepts::{concept_prompts, Concept, ConceptPromptSet, ConceptScorer};
use crate::knowledge::zero_shot::{self, fill_template, ZeroShotClassifier};
use crate::model::clip::{Clip, Towers};
use crate::weights::StateDict;

/// Inputs per forward pass: bounds peak memory for long label lists and many images.
pub const IMAGE_BATCH: usize = 8;
pub const TEXT_BATCH: usize = 64;
/// On the flex CPU backend one image per pass is fastest per image (measured with `bench
/// --batch 1,2,4,8`: 267, 320, 336, 338 ms per image for ViT-B/16 on 2 cores), as the
/// activations of one image stay in cache.
pub const CPU_IMAGE_BATCH: usize = 1;

pub struct DermLip {
    pub config: ClipConfig,
    pub preprocess: PreprocessConfig,
    /// CLIP BPE, or the BERT WordPiece of the checkpoint (`NotLoaded` until its file is given).
    pub tokenizer: TextTokenizer,
    pub model: Clip,
    pub device: Device,
    /// The towers whose weights are loaded; encoding with the other one is an error.
    pub towers: Towers,
}

impl DermLip {
    pub fn from_parts(file_config: ModelFileConfig, weights: StateDict, device: Device) -> Result<Self> {
        Self::from_parts_towers(file_config, weights, Towers::Both, device)
    }

    /// Only the towers asked for; see [`Clip::from_state_dict_towers`].
    pub fn from_parts_towers(
        file_config: ModelFileConfig,
        weights: StateDict,
        towers: Towers,
        device: Device,
    ) -> Result<Self> {
        let model = Clip::from_state_dict_towers(&file_config.model, weights, towers, &device)?;
        Self::assemble(file_config, model, towers, device)
    }

    /// Adds the text tower to a model loaded with [`Towers::Image`]. A BERT text tower needs its
    /// tokenizer first ([`ModelFileConfig::with_tokenizer`] or [`DermLip::set_tokenizer`]).
    pub fn add_text_tower(&mut self, weights: StateDict) -> Result<()> {
        if self.towers.has_text() {
            return Ok(());
        }
        if !self.tokenizer.is_loaded() {
            return Err(Error::Config(NO_TOKENIZER.into()));
        }
        self.model.load_text_tower(&self.config, weights, &self.device)?;
        self.towers = Towers::Both;
        Ok(())
    }

    pub fn require_text(&self) -> Result<()> {
        if self.towers.has_text() {
            Ok(())
        } else {
            Err(Error::Config("the text tower is not loaded (needed for custom labels)".into()))
        }
    }

    pub fn require_image(&self) -> Result<()> {
        if self.towers.has_image() {
            Ok(())
        } else {
            Err(Error::Config("the image tower is not loaded".into()))
        }
    }

    /// Sets the tokenizer file of a BERT text tower (`tokenizer.json` or `vocab.txt`), e.g. in the
    /// browser before [`DermLip::add_text_tower`].
    pub fn set_tokenizer(&mut self, file: TokenizerFile) -> Result<()> {
        let mut config = self.config.clone();
        if let TextArch::Bert(b) = &mut config.text.arch {
            b.tokenizer = Some(file);
        }
        self.tokenizer = TextTokenizer::for_config(&config)?;
        self.config = config;
        Ok(())
    }

    /// Wraps an already built model (e.g. randomly initialised with [`Clip::new`]).
    pub fn from_model(file_config: ModelFileConfig, model: Clip, device: Device) -> Result<Self> {
        Self::assemble(file_config, model, Towers::Both, device)
    }

    fn assemble(file_config: ModelFileConfig, model: Clip, towers: Towers, device: Device) -> Result<Self> {
        let ModelFileConfig { model: config, preprocess } = file_config;
        if preprocess.size as usize != config.vision.image_size {
            return Err(Error::Config(format!(
                "preprocess_cfg size {} differs from vision_cfg.image_size {}",
                preprocess.size, config.vision.image_size
            )));
        }
        let tokenizer = TextTokenizer::for_config(&config)?;
        if towers.has_text() && !tokenizer.is_loaded() {
            return Err(Error::Config(NO_TOKENIZER.into()));
        }
        Ok(DermLip { config, preprocess, tokenizer, model, device, towers })
    }

    /// A checkpoint directory (`open_clip_config.json` + weights) or a weights file whose
    /// directory holds the config. Weights: `open_clip_model.safetensors`, else
    /// `open_clip_pytorch_model.bin`, else a single `.pt`/`.pth`/`.bin`/`.safetensors` file.
    #[cfg(not(target_family = "wasm"))]
    pub fn load(path: &std::path::Path, device: Device) -> Result<Self> {
        let (file_config, weights) = crate::checkpoint::read(path)?;
        Self::from_parts(file_config, weights, device)
    }

    /// Decodes and preprocesses each image (as the CLI and the browser receive them: file bytes).
    pub fn preprocess_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
        images.iter().map(|b| Ok(preprocess::preprocess(b, &self.preprocess)?)).collect()
    }

    /// The model input for the collection model check's probe picture
    /// ([`crate::knowledge::retrieval::probe_rgba`]), preprocessed as any image.
    pub fn probe_pixels(&self) -> Result<Vec<f32>> {
        use crate::knowledge::retrieval::{probe_rgba, PROBE_SIDE};
        let rgb = preprocess::crop_rgba(&probe_rgba(), PROBE_SIDE, PROBE_SIDE, &self.preprocess)?;
        Ok(preprocess::normalize(&rgb, &self.preprocess))
    }

    /// Normalised `3×size×size` CHW buffers → unnormalised image embeddings `[n, embed_dim]`.
    pub fn encode_pixels(&self, pixels: &[Vec<f32>]) -> Tensor<2> {
        self.encode_pixels_with(pixels, |batch| self.model.encode_image(batch))
    }

    /// One image's embedding `[1, embed_dim]` and its projected patch tokens `[patches, embed_dim]`
    /// (for [`crate::knowledge::heatmap`]); the last block computes every row.
    pub fn encode_pixels_with_patches(&self, pixels: Vec<f32>) -> (Tensor<2>, Tensor<2>) {
        let size = self.preprocess.size as usize;
        let batch = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, size, size]), &self.device);
        let (embedding, patches) = self.model.encode_image_with_patches(batch);
        let [_, n, d] = patches.dims();
        (embedding, patches.reshape([n, d]))
    }

    /// The linear-probe features of the images (PanDerm: the pre-head `width`-d feature; ViT: the
    /// embedding); see [`Clip::encode_image_features`].
    pub fn encode_pixel_features(&self, pixels: &[Vec<f32>]) -> Tensor<2> {
        self.encode_pixels_with(pixels, |batch| self.model.encode_image_features(batch))
    }

    fn encode_pixels_with(&self, pixels: &[Vec<f32>], encode: impl Fn(Tensor<4>) -> Tensor<2>) -> Tensor<2> {
        let size = self.preprocess.size as usize;
        let per_pass = if self.device == Device::flex() { CPU_IMAGE_BATCH } else { IMAGE_BATCH };
        let parts: Vec<Tensor<2>> = pixels
            .chunks(per_pass)
            .map(|chunk| {
                let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
                let batch = Tensor::<4>::from_data(TensorData::new(flat, [chunk.len(), 3, size, size]), &self.device);
                encode(batch)
            })
            .collect();
        Tensor::cat(parts, 0)
    }

    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        Ok(self.tokenizer.encode_batch(texts)?)
    }

    /// Token ids → unnormalised text embeddings `[n, embed_dim]`.
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Tensor<2> {
        let pad = text_pad_id(&self.config.text.arch);
        let parts: Vec<Tensor<2>> = ids
            .chunks(TEXT_BATCH)
            .map(|chunk| self.model.encode_text(TextIds::from_rows(chunk, pad).tensor(&self.device)))
            .collect();
        Tensor::cat(parts, 0)
    }

    /// The texts the zero-shot classifier embeds: every template for the first class, then the next.
    pub fn prompts(labels: &[String], templates: &[String]) -> Vec<String> {
        labels.iter().flat_map(|l| templates.iter().map(move |t| fill_template(t, l.trim()))).collect()
    }

    /// [`DermLip::prompts`] after checking the labels and templates.
    fn zero_shot_prompts(labels: &[String], templates: &[String]) -> Result<Vec<String>> {
        zero_shot::validate_labels(labels)?;
        zero_shot::validate_templates(templates)?;
        Ok(Self::prompts(labels, templates))
    }
}

/// Text work split at its one readback: the texts to embed, and what is made of their embeddings.
/// Each text product (zero-shot classifier, concept scorer) is described once as a `TextWork`;
/// the blocking ([`DermLip::run_text`], native) and asynchronous ([`DermLip::run_text_async`],
/// the only kind WebGPU in wasm allows) versions differ only in how the embeddings are read back.
struct TextWork<'a, T> {
    texts: Vec<String>,
    finish: Box<dyn FnOnce(&[Vec<f32>]) -> Result<T> + 'a>,
}

impl<'a, T> TextWork<'a, T> {
    fn refs(&self) -> Vec<&str> {
        self.texts.iter().map(String::as_str).collect()
    }
}

impl DermLip {
    /// The text tower's embeddings of `texts`, still on the device (`None` for no texts).
    fn text_embeddings(&self, texts: &[&str]) -> Result<Option<Tensor<2>>> {
        self.require_text()?;
        if texts.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.encode_ids(&self.token_ids(texts)?)))
    }

    /// The zero-shot classifier of `labels` (checked, with the templates) as text work.
    fn zero_shot_work<'a>(labels: &'a [String], templates: &[String]) -> Result<TextWork<'a, ZeroShotClassifier>> {
        let texts = Self::zero_shot_prompts(labels, templates)?;
        let per_class = templates.len();
        Ok(TextWork {
            texts,
            finish: Box::new(move |e| ZeroShotClassifier::from_text_embeddings(labels.to_vec(), e, per_class)),
        })
    }

    /// The concept scorer (prompts checked) as text work.
    fn concept_work<'a>(
        concepts: &'a [Concept],
        prompts: &'a ConceptPromptSet,
        temperature: f32,
    ) -> Result<TextWork<'a, ConceptScorer>> {
        prompts.validate()?;
        Ok(TextWork {
            texts: concept_prompts(concepts, prompts),
            finish: Box::new(move |e| ConceptScorer::from_text_embeddings(concepts, prompts, e, temperature)),
        })
    }

    async fn run_text_async<T>(&self, work: TextWork<'_, T>) -> Result<T> {
        let embeddings = self.embed_texts_async(&work.refs()).await?;
        (work.finish)(&embeddings)
    }

    pub async fn embed_texts_async(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self.text_embeddings(texts)? {
            Some(t) => rows_async(t).await,
            None => Ok(Vec::new()),
        }
    }

    pub async fn zero_shot_classifier_async(
        &self,
        labels: &[String],
        templates: &[String],
    ) -> Result<ZeroShotClassifier> {
        self.run_text_async(Self::zero_shot_work(labels, templates)?).await
    }

    pub async fn zero_shot_weights_async(&self, labels: &[String], templates: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(self.zero_shot_classifier_async(labels, templates).await?.weights)
    }

    pub async fn concept_scorer_async(
        &self,
        concepts: &[Concept],
        prompts: &ConceptPromptSet,
        temperature: f32,
    ) -> Result<ConceptScorer> {
        self.run_text_async(Self::concept_work(concepts, prompts, temperature)?).await
    }
}

/// Reads a `[n, d]` tensor back to rows. Native only: WebGPU needs [`rows_async`].
#[cfg(not(target_family = "wasm"))]
pub fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let data = t.into_data();
    split_rows(data, d)
}

pub async fn rows_async(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let data = t.into_data_async().await.map_err(|e| Error::Device(format!("reading results back failed: {e:?}")))?;
    split_rows(data, d)
}

fn split_rows(data: TensorData, d: usize) -> Result<Vec<Vec<f32>>> {
    let flat = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Device(format!("unexpected result type: {e:?}")))?;
    // An overflow (most likely in half-precision compute) must not become a confident answer.
    if flat.iter().any(|v| !v.is_finite()) {
        return Err(Error::Device(NON_FINITE.into()));
    }
    Ok(flat.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// The message of a result with NaN or ∞ in it; the browser worker (through
/// `web::non_finite_message`) retries an f16 engine in f32 on it.
pub const NON_FINITE: &str =
    "the model produced non-finite values (NaN or infinity): a numeric overflow, most likely from half-precision (f16) compute; use f32";

/// Native convenience: the full zero-shot pipeline with blocking readback.
#[cfg(not(target_family = "wasm"))]
impl DermLip {
    pub fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
        self.require_image()?;
        rows(self.encode_pixels(&self.preprocess_images(images)?))
    }

    fn run_text<T>(&self, work: TextWork<'_, T>) -> Result<T> {
        let embeddings = self.embed_texts(&work.refs())?;
        (work.finish)(&embeddings)
    }

    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self.text_embeddings(texts)? {
            Some(t) => rows(t),
            None => Ok(Vec::new()),
        }
    }

    /// Embeds every prompt (each template for each label) once; the classifier then needs only
    /// image embeddings.
    pub fn zero_shot_classifier(&self, labels: &[String], templates: &[String]) -> Result<ZeroShotClassifier> {
        self.run_text(Self::zero_shot_work(labels, templates)?)
    }

    /// The class weights of [`DermLip::zero_shot_classifier`].
    pub fn zero_shot_weights(&self, labels: &[String], templates: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(self.zero_shot_classifier(labels, templates)?.weights)
    }

    /// The out-of-domain check's prompt embeddings ([`crate::knowledge::domain`]).
    pub fn domain_check(&self) -> Result<crate::knowledge::domain::DomainCheck> {
        let (skin, other) = crate::knowledge::domain::prompts();
        let plain = ["{}".to_string()];
        crate::knowledge::domain::DomainCheck::new(
            self.zero_shot_weights(&skin, &plain)?,
            self.zero_shot_weights(&other, &plain)?,
        )
    }

    /// Embeds every concept prompt once; the scorer then needs only image embeddings.
    pub fn concept_scorer(
        &self,
        concepts: &[Concept],
        prompts: &ConceptPromptSet,
        temperature: f32,
    ) -> Result<ConceptScorer> {
        self.run_text(Self::concept_work(concepts, prompts, temperature)?)
    }
}

const NO_TOKENIZER: &str =
    "the BERT text tower needs its tokenizer file (tokenizer.json or vocab.txt from the checkpoint directory)";

/// Top-k predictions of one image embedding against zero-shot class weights (kept here for
/// existing callers; [`ZeroShotClassifier::classify`] is the same).
pub use crate::knowledge::zero_shot::classify_embedding;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_results_are_an_error_not_an_answer() {
        let ok = split_rows(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), 2).unwrap();
        assert_eq!(ok, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = split_rows(TensorData::new(vec![1.0f32, bad], [1, 2]), 2).unwrap_err();
            assert!(err.to_string().contains(NON_FINITE), "{err}");
        }
    }
}
