//! A loaded model with its tokenizer and preprocessing: what the CLI, the browser API and the
//! evaluation code call. Tensor work stays on the device; only embeddings are read back.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::clip::{Clip, Towers};
use crate::concepts::{concept_prompts, Concept, ConceptPromptSet, ConceptScorer};
use crate::config::{ClipConfig, ModelFileConfig, TextArch};
use crate::error::{Error, Result};
use crate::preprocess::{self, PreprocessConfig};
use crate::tokenizer::{ClipTokenizer, TextTokenizer, PAD_TOKEN, VOCAB_SIZE};
use crate::weights::StateDict;
use crate::wordpiece::{TokenizerFile, WordPieceTokenizer};
use crate::zero_shot::{self, fill_template, Prediction};

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
        self.tokenizer = build_tokenizer(&config)?;
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
        let tokenizer = build_tokenizer(&config)?;
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
        let (dir, weights_path) = locate_checkpoint(path)?;
        let file_config = ModelFileConfig::from_checkpoint_dir(&dir)?;
        let weights = StateDict::from_file(&weights_path)?;
        Self::from_parts(file_config, weights, device)
    }

    /// Decodes and preprocesses each image (as the CLI and the browser receive them: file bytes).
    pub fn preprocess_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>> {
        images.iter().map(|b| Ok(preprocess::preprocess(b, &self.preprocess)?)).collect()
    }

    /// Normalised `3×size×size` CHW buffers → unnormalised image embeddings `[n, embed_dim]`.
    pub fn encode_pixels(&self, pixels: &[Vec<f32>]) -> Tensor<2> {
        self.encode_pixels_with(pixels, |batch| self.model.encode_image(batch))
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
            .map(|chunk| {
                let flat: Vec<i32> = chunk.iter().flatten().map(|&i| i as i32).collect();
                let (flat, len) = trim_text_padding(&flat, chunk.len(), pad as i32);
                let batch = Tensor::<2, Int>::from_data(TensorData::new(flat, [chunk.len(), len]), &self.device);
                self.model.encode_text(batch)
            })
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

/// Text work with asynchronous readback, the only kind WebGPU in wasm allows (the browser engine's
/// path); the blocking native versions are below.
impl DermLip {
    pub async fn embed_texts_async(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.require_text()?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        rows_async(self.encode_ids(&self.token_ids(texts)?)).await
    }

    pub async fn zero_shot_weights_async(&self, labels: &[String], templates: &[String]) -> Result<Vec<Vec<f32>>> {
        let prompts = Self::zero_shot_prompts(labels, templates)?;
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        Ok(zero_shot::class_weights(&self.embed_texts_async(&refs).await?, templates.len()))
    }

    pub async fn concept_scorer_async(
        &self,
        concepts: &[Concept],
        prompts: &ConceptPromptSet,
        temperature: f32,
    ) -> Result<ConceptScorer> {
        prompts.validate()?;
        let texts = concept_prompts(concepts, prompts);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        ConceptScorer::from_text_embeddings(concepts, prompts, &self.embed_texts_async(&refs).await?, temperature)
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

    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.require_text()?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        rows(self.encode_ids(&self.token_ids(texts)?))
    }

    pub fn zero_shot_weights(&self, labels: &[String], templates: &[String]) -> Result<Vec<Vec<f32>>> {
        let prompts = Self::zero_shot_prompts(labels, templates)?;
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        Ok(zero_shot::class_weights(&self.embed_texts(&refs)?, templates.len()))
    }

    /// Embeds every concept prompt once; the scorer then needs only image embeddings.
    pub fn concept_scorer(
        &self,
        concepts: &[Concept],
        prompts: &ConceptPromptSet,
        temperature: f32,
    ) -> Result<ConceptScorer> {
        prompts.validate()?;
        let texts = concept_prompts(concepts, prompts);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        ConceptScorer::from_text_embeddings(concepts, prompts, &self.embed_texts(&refs)?, temperature)
    }
}

/// The id the text tower's tokenizer pads with: 0 for open_clip's CLIP BPE, `pad_token_id` for a BERT.
pub fn text_pad_id(arch: &TextArch) -> u32 {
    match arch {
        TextArch::Clip => PAD_TOKEN,
        TextArch::Bert(b) => b.pad_token_id,
    }
}

/// Drops the padding columns that every row of a `[rows, row_len]` batch of token ids ends with:
/// they change no text embedding, so the text tower need not run over them (prompts use ~20 of
/// CLIP's 77 positions, a few dozen of BERT's 256). BERT masks padding as keys and leaves it out
/// of its mean; CLIP's attention is causal and it pools at the end-of-text token, which no later
/// position can reach (so their gradients are zero too). Returns the ids and the new row length.
pub fn trim_text_padding(ids: &[i32], rows: usize, pad: i32) -> (Vec<i32>, usize) {
    let row_len = ids.len() / rows.max(1);
    if rows == 0 || row_len == 0 {
        return (ids.to_vec(), row_len);
    }
    let len = ids.chunks(row_len).map(|row| used_length(row, pad)).max().unwrap_or(row_len);
    (ids.chunks(row_len).flat_map(|row| &row[..len]).copied().collect(), len)
}

/// Ids up to and including the last non-padding one (at least one).
fn used_length(row: &[i32], pad: i32) -> usize {
    row.iter().rposition(|&i| i != pad).map_or(1, |last| last + 1)
}

const NO_TOKENIZER: &str =
    "the BERT text tower needs its tokenizer file (tokenizer.json or vocab.txt from the checkpoint directory)";

/// The config's tokenizer: CLIP BPE, or the BERT WordPiece from its file (`NotLoaded` without one).
fn build_tokenizer(config: &ClipConfig) -> Result<TextTokenizer> {
    let ctx = config.text.context_length;
    match &config.text.arch {
        TextArch::Clip => {
            if config.text.vocab_size != VOCAB_SIZE {
                return Err(Error::Config(format!(
                    "text_cfg.vocab_size is {}, but the CLIP BPE tokenizer has {VOCAB_SIZE} tokens",
                    config.text.vocab_size
                )));
            }
            Ok(TextTokenizer::Clip(ClipTokenizer::new()?.with_context_length(ctx)?))
        }
        TextArch::Bert(b) => {
            let Some(file) = &b.tokenizer else { return Ok(TextTokenizer::NotLoaded) };
            let t = WordPieceTokenizer::new(file, ctx)?;
            if t.vocab_size() > config.text.vocab_size {
                return Err(Error::Config(format!(
                    "the tokenizer has {} tokens but the BERT text tower only {}",
                    t.vocab_size(),
                    config.text.vocab_size
                )));
            }
            if t.pad_id() != b.pad_token_id {
                return Err(Error::Config(format!(
                    "the tokenizer pads with id {} but the BERT text tower masks id {}",
                    t.pad_id(),
                    b.pad_token_id
                )));
            }
            Ok(TextTokenizer::WordPiece(t))
        }
    }
}

/// Top-k predictions of one image embedding against zero-shot class weights.
pub fn classify_embedding(embedding: &[f32], weights: &[Vec<f32>], labels: &[String], k: usize) -> Vec<Prediction> {
    zero_shot::top_k(labels, &zero_shot::logits(embedding, weights), k.max(1))
}

#[cfg(not(target_family = "wasm"))]
pub fn locate_checkpoint(path: &std::path::Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Io { path: shown.clone(), message: format!("no such model: {e}") })?;
    if meta.is_file() {
        let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| ".".into());
        let dir = if dir.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { dir };
        return Ok((dir, path.to_path_buf()));
    }
    for name in ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"] {
        let p = path.join(name);
        if p.is_file() {
            return Ok((path.to_path_buf(), p));
        }
    }
    let mut others: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::Io { path: shown.clone(), message: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth" | "bin" | "safetensors")))
        .collect();
    others.sort();
    match others.len() {
        1 => Ok((path.to_path_buf(), others.remove(0))),
        0 => Err(Error::Io {
            path: shown,
            message: "no weights found (expected open_clip_model.safetensors or open_clip_pytorch_model.bin)".into(),
        }),
        _ => Err(Error::Io {
            path: shown,
            message: format!(
                "several weight files and no open_clip_model.safetensors; name one: {}",
                others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_batches_are_cut_after_their_last_non_padding_id() {
        use crate::tokenizer::{EOT_TOKEN, SOT_TOKEN};
        let tok = ClipTokenizer::new().unwrap();
        let ids: Vec<i32> =
            ["a photo of a nevus", "melanoma"].iter().flat_map(|t| tok.encode(t).unwrap()).map(|i| i as i32).collect();
        let eot = ids.iter().position(|&i| i == EOT_TOKEN as i32).unwrap();
        let (cut, len) = trim_text_padding(&ids, 2, 0);
        assert_eq!(len, eot + 1);
        assert_eq!(cut[..len], ids[..len]);
        assert_eq!(cut[len..], ids[77..77 + len]);
        // Id 0 is also the BPE token "!": only the zeros after end-of-text are padding.
        let (sot, eot) = (SOT_TOKEN as i32, EOT_TOKEN as i32);
        assert_eq!(trim_text_padding(&[sot, 0, 320, 0, eot, 0, 0], 1, 0).1, 5);
        // A full row keeps every column; an empty batch stays empty.
        let full: Vec<i32> = tok.encode(&"word ".repeat(100)).unwrap().iter().map(|&i| i as i32).collect();
        assert_eq!(trim_text_padding(&full, 1, 0).1, 77);
        assert_eq!(trim_text_padding(&[], 0, 0), (vec![], 0));
    }

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
