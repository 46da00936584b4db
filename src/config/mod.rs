//! Model configuration as open_clip writes it: either a hub `open_clip_config.json`
//! (`{"model_cfg": …, "preprocess_cfg": …}`) or a bare model config (`{"embed_dim": …}`).
//!
//! The types and the presets are here; the parsers of open_clip's JSON (`open_clip.rs`) and of a
//! Hugging Face BERT's `config.json` (`hf_bert.rs`) are beside them. Every key open_clip knows is
//! either honoured, accepted because it does not change inference, or refused with a message
//! naming it. Keys nobody knows are refused too: a typo must not silently fall back to a default
//! and build a different network. Reading the files of a checkpoint directory is native-only
//! (`crate::checkpoint`).

mod hf_bert;
mod json;
mod open_clip;

use serde::{Deserialize, Serialize};

use crate::error::{PreprocessError, TokenizerError};
use hf_bert::{known_bert, PUBMEDBERT_NAMES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU: open_clip's default.
    Gelu,
    /// x·σ(1.702x), the activation of OpenAI's CLIP weights (`"quick_gelu": true`).
    QuickGelu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionPool {
    /// The class token (`pool_type = "tok"`).
    Token,
    /// Mean of the patch tokens (`pool_type = "avg"`).
    Avg,
}

/// Which image tower graph the config selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisionArch {
    /// open_clip's `VisionTransformer` (DermLIP_ViT-B-16).
    OpenClip,
    /// The CAE/BEiT-style PanDerm ViT of the Derm1M fork (DermLIP_PanDerm-base-w-PubMed-256),
    /// selected by the fork's `vision_cfg.pretrain_path` key (see docs/models.md).
    PanDerm,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
    pub arch: VisionArch,
    pub image_size: usize,
    pub patch_size: usize,
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub pool: VisionPool,
    pub final_ln_after_pool: bool,
}

impl VisionConfig {
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Class token plus one token per patch.
    pub fn num_positions(&self) -> usize {
        self.grid_size() * self.grid_size() + 1
    }
}

/// Which text tower graph the config selects.
#[derive(Clone, Debug, PartialEq)]
pub enum TextArch {
    /// open_clip's causal text transformer with CLIP BPE (`width`, `heads`, … from `text_cfg`).
    Clip,
    /// A Hugging Face BERT (`text_cfg.hf_model_name`), WordPiece tokenizer. `TextConfig`'s
    /// `vocab_size`, `width`, `heads`, `layers` and `mlp_width` hold BERT's vocab, hidden size,
    /// attention heads, layers and intermediate size.
    Bert(BertConfig),
}

/// What open_clip's `HFTextEncoder` over a BERT needs beyond the common sizes.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub model_name: String,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    pub projection: HfProjection,
    /// The vocabulary file (`tokenizer.json` or `vocab.txt`): not part of `open_clip_config.json`,
    /// added by [`ModelFileConfig::with_tokenizer`]. Needed to tokenise, not to embed token ids.
    pub tokenizer: Option<TokenizerFile>,
}

/// open_clip's `hf_proj_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfProjection {
    /// Linear(d, (d+embed)/2, no bias) → GELU → Linear(…, embed, no bias): keys `proj.0`, `proj.2`.
    Mlp,
    /// Linear(d, embed, no bias): key `proj`.
    Linear,
}

impl HfProjection {
    pub fn hidden(self, width: usize, embed_dim: usize) -> usize {
        (width + embed_dim) / 2
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    pub arch: TextArch,
    pub context_length: usize,
    pub vocab_size: usize,
    pub width: usize,
    pub heads: usize,
    pub layers: usize,
    pub mlp_width: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClipConfig {
    pub embed_dim: usize,
    pub activation: Activation,
    pub vision: VisionConfig,
    pub text: TextConfig,
}

/// Everything a checkpoint directory's `open_clip_config.json` tells us (plus, for a BERT text
/// tower, its tokenizer file: see [`ModelFileConfig::with_tokenizer`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFileConfig {
    pub model: ClipConfig,
    pub preprocess: PreprocessConfig,
}

const LAYER_NORM_EPS: f64 = 1e-5;

impl ClipConfig {
    pub fn layer_norm_eps(&self) -> f64 {
        LAYER_NORM_EPS
    }

    /// The stock open_clip `ViT-B-16` architecture (DermLIP_ViT-B-16) with the given activation.
    pub fn vit_b_16(activation: Activation) -> Self {
        ClipConfig {
            embed_dim: 512,
            activation,
            vision: VisionConfig {
                arch: VisionArch::OpenClip,
                image_size: 224,
                patch_size: 16,
                width: 768,
                layers: 12,
                heads: 12,
                mlp_width: 3072,
                pool: VisionPool::Token,
                final_ln_after_pool: false,
            },
            text: TextConfig {
                arch: TextArch::Clip,
                context_length: 77,
                vocab_size: 49408,
                width: 512,
                heads: 8,
                layers: 12,
                mlp_width: 2048,
            },
        }
    }

    /// DermLIP_PanDerm-base-w-PubMed-256: PanDerm-base vision, PubMedBERT text, context 256.
    pub fn panderm_base_pubmedbert_256() -> Self {
        let mut text = known_bert(PUBMEDBERT_NAMES[0]).expect("PubMedBERT is in the table");
        text.context_length = 256;
        ClipConfig {
            embed_dim: 512,
            activation: Activation::Gelu,
            vision: VisionConfig { arch: VisionArch::PanDerm, ..Self::vit_b_16(Activation::Gelu).vision },
            text,
        }
    }
}

impl ModelFileConfig {
    /// Adds the tokenizer file of a BERT text tower (the CLIP text tower's BPE is built in: this
    /// is a no-op for it).
    pub fn with_tokenizer(mut self, tokenizer: TokenizerFile) -> Self {
        if let TextArch::Bert(b) = &mut self.model.text.arch {
            b.tokenizer = Some(tokenizer);
        }
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bicubic,
    Bilinear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Resize the shortest side to `size`, then centre-crop `size`×`size`.
    Shortest,
    /// Resize straight to `size`×`size`, ignoring the aspect ratio.
    Squash,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct PreprocessConfig {
    pub size: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: Interpolation,
    pub resize_mode: ResizeMode,
    pub max_pixels: u64,
}

impl Default for PreprocessConfig {
    #[allow(clippy::excessive_precision)] // OpenAI CLIP's constants, spelled as open_clip spells them
    fn default() -> Self {
        Self {
            size: 224,
            mean: [0.48145466, 0.4578275, 0.40821073],
            std: [0.26862954, 0.26130258, 0.27577711],
            interpolation: Interpolation::Bicubic,
            resize_mode: ResizeMode::Shortest,
            max_pixels: 100_000_000,
        }
    }
}

impl PreprocessConfig {
    pub(crate) fn validate(&self) -> Result<(), PreprocessError> {
        if self.size == 0 || self.size > 4096 {
            return Err(PreprocessError::Config(format!("size {} is outside 1..=4096", self.size)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(PreprocessError::Config(format!(
                "mean {:?} must be finite and std {:?} finite and positive",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

/// The contents of a tokenizer file from a checkpoint directory.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenizerFile {
    /// `tokenizer.json` (Hugging Face tokenizers format).
    Json(Vec<u8>),
    /// `vocab.txt`: one WordPiece per line, id = line number (an uncased BERT vocabulary).
    VocabTxt(String),
}

impl TokenizerFile {
    /// The file names [`TokenizerFile::from_named_bytes`] accepts, in order of preference.
    pub const FILE_NAMES: [&'static str; 2] = ["tokenizer.json", "vocab.txt"];

    /// A file by its name: `tokenizer.json` or `vocab.txt` (the name may carry a directory).
    pub fn from_named_bytes(name: &str, bytes: Vec<u8>) -> Result<Self, TokenizerError> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        match base {
            "tokenizer.json" => Ok(TokenizerFile::Json(bytes)),
            "vocab.txt" => String::from_utf8(bytes)
                .map(TokenizerFile::VocabTxt)
                .map_err(|_| TokenizerError::WordPiece(format!("{name} is not UTF-8 text"))),
            _ => Err(TokenizerError::WordPiece(format!(
                "{name}: expected a tokenizer.json or vocab.txt file for the BERT text tower"
            ))),
        }
    }
}
