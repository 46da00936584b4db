//! Model configuration as open_clip writes it: either a hub `open_clip_config.json`
//! (`{"model_cfg": …, "preprocess_cfg": …}`) or a bare model config (`{"embed_dim": …}`).
//!
//! Every key open_clip knows is either honoured, accepted because it does not change inference,
//! or refused with a message naming it. Keys nobody knows are refused too: a typo must not
//! silently fall back to a default and build a different network.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::preprocess::PreprocessConfig;
pub use crate::wordpiece::TokenizerFile;

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

    /// Parses a bare open_clip model config (the `model_cfg` object).
    pub fn from_open_clip(cfg: &Value) -> Result<Self, Error> {
        Self::from_open_clip_with_text_model(cfg, None)
    }

    /// As [`ClipConfig::from_open_clip`], with the Hugging Face `config.json` of the text model
    /// named by `text_cfg.hf_model_name` (needed only for BERTs dermlip does not know by name).
    pub fn from_open_clip_with_text_model(cfg: &Value, text_model: Option<&Value>) -> Result<Self, Error> {
        let top = object(cfg, "model config")?;
        for (key, value) in top {
            match key.as_str() {
                "embed_dim" | "vision_cfg" | "text_cfg" | "quick_gelu" => {}
                // Training-time or output-format settings that do not change the forward pass.
                "cast_dtype" | "init_logit_scale" | "custom_text" | "output_dict" => {}
                "init_logit_bias" => require_null(value, "init_logit_bias", "SigLIP-style logit bias")?,
                "multimodal_cfg" => return Err(unsupported("multimodal_cfg", "CoCa models")),
                _ => return Err(unknown_field("model config", key)),
            }
        }
        let activation = match top.get("quick_gelu") {
            None | Some(Value::Null) => Activation::Gelu,
            Some(Value::Bool(false)) => Activation::Gelu,
            Some(Value::Bool(true)) => Activation::QuickGelu,
            Some(other) => return Err(bad_value("quick_gelu", other, "true or false")),
        };
        let embed_dim = req_usize(top, "embed_dim", "model config")?;
        let vision = parse_vision(object(field(top, "vision_cfg", "model config")?, "vision_cfg")?)?;
        if vision.arch == VisionArch::PanDerm && vision.width % 4 != 0 {
            return Err(Error::Config(format!(
                "vision_cfg.width {} is not a multiple of 4 (PanDerm's 2-D sin-cos positions need it)",
                vision.width
            )));
        }
        let text_cfg = object(field(top, "text_cfg", "model config")?, "text_cfg")?;
        let text = match text_cfg.get("hf_model_name") {
            None | Some(Value::Null) => parse_text(text_cfg)?,
            Some(_) => parse_hf_text(text_cfg, text_model)?,
        };
        Ok(ClipConfig { embed_dim, activation, vision, text })
    }
}

impl ModelFileConfig {
    /// Parses `open_clip_config.json` text: the hub form or a bare model config.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        Self::from_json_strs(text, None)
    }

    /// `open_clip_config.json` text plus, optionally, the Hugging Face `config.json` of a BERT text
    /// tower that dermlip does not know by its `hf_model_name`.
    pub fn from_json_strs(open_clip_config: &str, text_model_config: Option<&str>) -> Result<Self, Error> {
        let value: Value =
            serde_json::from_str(open_clip_config).map_err(|e| Error::Config(format!("not valid JSON: {e}")))?;
        let text_model = text_model_config
            .map(serde_json::from_str::<Value>)
            .transpose()
            .map_err(|e| Error::Config(format!("text model config.json is not valid JSON: {e}")))?;
        Self::from_values(&value, text_model.as_ref())
    }

    /// The config files of a checkpoint directory: `open_clip_config.json`; for a BERT text tower
    /// also its Hugging Face `config.json` (if present) and `tokenizer.json` (else `vocab.txt`).
    #[cfg(not(target_family = "wasm"))]
    pub fn from_checkpoint_dir(dir: &std::path::Path) -> Result<Self, Error> {
        let config_path = dir.join("open_clip_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::Io {
            path: config_path.display().to_string(),
            message: format!("cannot read the model config: {e}"),
        })?;
        // A CLIP checkpoint never reads config.json (it may be some other tool's file).
        let text_model = match text.contains("\"hf_model_name\"") {
            true => read_optional(&dir.join("config.json"))?
                .map(|b| String::from_utf8(b).map_err(|_| io_error(&dir.join("config.json"), "not UTF-8")))
                .transpose()?,
            false => None,
        };
        let cfg = Self::from_json_strs(&text, text_model.as_deref())
            .map_err(|e| Error::Config(format!("{}: {}", config_path.display(), e.detail())))?;
        match &cfg.model.text.arch {
            TextArch::Bert(_) => Ok(cfg.with_tokenizer(read_tokenizer_file(dir)?)),
            TextArch::Clip => Ok(cfg),
        }
    }

    /// Adds the tokenizer file of a BERT text tower (the CLIP text tower's BPE is built in: this
    /// is a no-op for it).
    pub fn with_tokenizer(mut self, tokenizer: TokenizerFile) -> Self {
        if let TextArch::Bert(b) = &mut self.model.text.arch {
            b.tokenizer = Some(tokenizer);
        }
        self
    }

    pub fn from_value(value: &Value) -> Result<Self, Error> {
        Self::from_values(value, None)
    }

    fn from_values(value: &Value, text_model: Option<&Value>) -> Result<Self, Error> {
        let top = object(value, "open_clip_config.json")?;
        if let Some(model_cfg) = top.get("model_cfg") {
            for key in top.keys() {
                if key != "model_cfg" && key != "preprocess_cfg" {
                    return Err(unknown_field("open_clip_config.json", key));
                }
            }
            let model = ClipConfig::from_open_clip_with_text_model(model_cfg, text_model)?;
            let preprocess = match top.get("preprocess_cfg") {
                Some(p) => PreprocessConfig::from_open_clip(p, model.vision.image_size as u32)?,
                None => default_preprocess(&model),
            };
            Ok(ModelFileConfig { model, preprocess })
        } else {
            let model = ClipConfig::from_open_clip_with_text_model(value, text_model)?;
            let preprocess = default_preprocess(&model);
            Ok(ModelFileConfig { model, preprocess })
        }
    }
}

/// `tokenizer.json`, else `vocab.txt`, from a checkpoint directory.
#[cfg(not(target_family = "wasm"))]
fn read_tokenizer_file(dir: &std::path::Path) -> Result<TokenizerFile, Error> {
    for name in TokenizerFile::FILE_NAMES {
        let path = dir.join(name);
        if let Some(bytes) = read_optional(&path)? {
            return TokenizerFile::from_named_bytes(name, bytes).map_err(|e| io_error(&path, &e.to_string()));
        }
    }
    Err(io_error(dir, "no tokenizer.json or vocab.txt for the BERT text tower"))
}

#[cfg(not(target_family = "wasm"))]
fn read_optional(path: &std::path::Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e.to_string())),
    }
}

#[cfg(not(target_family = "wasm"))]
fn io_error(path: &std::path::Path, message: &str) -> Error {
    Error::Io { path: path.display().to_string(), message: message.to_string() }
}

fn default_preprocess(model: &ClipConfig) -> PreprocessConfig {
    PreprocessConfig { size: model.vision.image_size as u32, ..PreprocessConfig::default() }
}

fn parse_vision(v: &Map<String, Value>) -> Result<VisionConfig, Error> {
    const CTX: &str = "vision_cfg";
    for (key, value) in v {
        match key.as_str() {
            "image_size"
            | "layers"
            | "width"
            | "head_width"
            | "mlp_ratio"
            | "patch_size"
            | "pool_type"
            | "final_ln_after_pool" => {}
            // Training-only (dropout of patches) or output-format switches.
            "patch_dropout" | "output_tokens" => {}
            // The Derm1M fork's PanDerm marker: its factory reads this key for every PanDerm model
            // (the init checkpoint path; null on the hub), and no other config has it.
            "pretrain_path" => {}
            "ls_init_value" => require_null(value, "vision_cfg.ls_init_value", "layer scale")?,
            "attentional_pool" => require_false(value, "vision_cfg.attentional_pool", "attentional pooling")?,
            "no_ln_pre" => require_false(value, "vision_cfg.no_ln_pre", "a vision tower without ln_pre")?,
            "pos_embed_type" => {
                if value.as_str() != Some("learnable") && !value.is_null() {
                    return Err(unsupported("vision_cfg.pos_embed_type", "position embeddings other than learnable"));
                }
            }
            "act_kwargs" | "norm_kwargs" => require_empty(value, &format!("vision_cfg.{key}"))?,
            "attn_pooler_queries" | "attn_pooler_heads" => {}
            "timm_model_name" => require_null(value, "vision_cfg.timm_model_name", "timm vision towers")?,
            // Only meaningful together with timm_model_name.
            k if k.starts_with("timm_") => {}
            _ => return Err(unknown_field(CTX, key)),
        }
    }
    let image_size = opt_usize(v, "image_size", CTX)?.unwrap_or(224);
    let patch_size = opt_usize(v, "patch_size", CTX)?.unwrap_or(16);
    let width = opt_usize(v, "width", CTX)?.unwrap_or(768);
    let layers = opt_usize(v, "layers", CTX)?.unwrap_or(12);
    let head_width = opt_usize(v, "head_width", CTX)?.unwrap_or(64);
    let mlp_ratio = opt_f64(v, "mlp_ratio", CTX)?.unwrap_or(4.0);
    if patch_size == 0 || image_size % patch_size != 0 {
        return Err(Error::Config(format!(
            "vision_cfg.image_size {image_size} is not a multiple of patch_size {patch_size}"
        )));
    }
    if head_width == 0 || width % head_width != 0 {
        return Err(Error::Config(format!("vision_cfg.width {width} is not a multiple of head_width {head_width}")));
    }
    let pool = match v.get("pool_type").and_then(Value::as_str) {
        None | Some("tok") => VisionPool::Token,
        Some("avg") => VisionPool::Avg,
        Some(other) => {
            return Err(Error::Config(format!(
                "vision_cfg.pool_type \"{other}\" is not supported (expected \"tok\" or \"avg\")"
            )))
        }
    };
    let arch = if v.contains_key("pretrain_path") { VisionArch::PanDerm } else { VisionArch::OpenClip };
    Ok(VisionConfig {
        arch,
        image_size,
        patch_size,
        width,
        layers,
        heads: width / head_width,
        mlp_width: (width as f64 * mlp_ratio) as usize,
        pool,
        final_ln_after_pool: opt_bool(v, "final_ln_after_pool", CTX)?.unwrap_or(false),
    })
}

fn parse_text(t: &Map<String, Value>) -> Result<TextConfig, Error> {
    const CTX: &str = "text_cfg";
    for (key, value) in t {
        match key.as_str() {
            "context_length" | "vocab_size" | "width" | "heads" | "layers" | "mlp_ratio" => {}
            "output_tokens" | "pad_id" => {}
            "ls_init_value" => require_null(value, "text_cfg.ls_init_value", "layer scale")?,
            "embed_cls" => require_false(value, "text_cfg.embed_cls", "a text CLS embedding")?,
            "no_causal_mask" => require_false(value, "text_cfg.no_causal_mask", "a text tower without causal mask")?,
            "final_ln_after_pool" => {
                require_false(value, "text_cfg.final_ln_after_pool", "final_ln_after_pool in the text tower")?
            }
            "proj_bias" => require_false(value, "text_cfg.proj_bias", "a text projection with bias")?,
            "pool_type" => {
                if value.as_str() != Some("argmax") && !value.is_null() {
                    return Err(unsupported(
                        "text_cfg.pool_type",
                        "text pooling other than argmax (end-of-text token)",
                    ));
                }
            }
            "proj_type" => {
                if value.as_str() != Some("linear") && !value.is_null() {
                    return Err(unsupported("text_cfg.proj_type", "text projections other than linear"));
                }
            }
            "act_kwargs" | "norm_kwargs" | "tokenizer_kwargs" => require_empty(value, &format!("text_cfg.{key}"))?,
            "hf_model_name" | "hf_tokenizer_name" => {
                require_null(value, &format!("text_cfg.{key}"), "Hugging Face text towers (e.g. PubMedBERT)")?
            }
            // Only meaningful together with hf_model_name.
            "hf_model_pretrained" | "hf_proj_type" | "hf_pooler_type" => {}
            _ => return Err(unknown_field(CTX, key)),
        }
    }
    let width = opt_usize(t, "width", CTX)?.unwrap_or(512);
    let heads = opt_usize(t, "heads", CTX)?.unwrap_or(8);
    if heads == 0 || width % heads != 0 {
        return Err(Error::Config(format!("text_cfg.width {width} is not a multiple of heads {heads}")));
    }
    let context_length = opt_usize(t, "context_length", CTX)?.unwrap_or(77);
    if context_length < 2 {
        return Err(Error::Config(format!("text_cfg.context_length {context_length} is below 2")));
    }
    let mlp_ratio = opt_f64(t, "mlp_ratio", CTX)?.unwrap_or(4.0);
    Ok(TextConfig {
        arch: TextArch::Clip,
        context_length,
        vocab_size: opt_usize(t, "vocab_size", CTX)?.unwrap_or(49408),
        width,
        heads,
        layers: opt_usize(t, "layers", CTX)?.unwrap_or(12),
        mlp_width: (width as f64 * mlp_ratio) as usize,
    })
}

/// Hugging Face BERTs whose sizes dermlip knows without their `config.json`: PubMedBERT-base
/// (uncased, 30522 tokens), as used by DermLIP-PanDerm and BiomedCLIP.
const PUBMEDBERT_NAMES: [&str; 5] = [
    "neuml/pubmedbert-base-embeddings",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext",
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
];

/// BERT-base sizes for a known model name; `context_length` is left at BERT's 512.
fn known_bert(name: &str) -> Option<TextConfig> {
    if !PUBMEDBERT_NAMES.contains(&name) {
        return None;
    }
    Some(TextConfig {
        arch: TextArch::Bert(BertConfig {
            model_name: name.to_string(),
            max_positions: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            projection: HfProjection::Mlp,
            tokenizer: None,
        }),
        context_length: 512,
        vocab_size: 30522,
        width: 768,
        heads: 12,
        layers: 12,
        mlp_width: 3072,
    })
}

/// `text_cfg` of open_clip's `HFTextEncoder` (`hf_model_name` set). Its sizes come from the named
/// model's `config.json` (`text_model`) or, for known names, from a built-in table.
fn parse_hf_text(t: &Map<String, Value>, text_model: Option<&Value>) -> Result<TextConfig, Error> {
    const CTX: &str = "text_cfg";
    for (key, value) in t {
        match key.as_str() {
            "context_length" | "hf_model_name" | "hf_tokenizer_name" | "hf_pooler_type" | "hf_proj_type" => {}
            "hf_model_pretrained" | "output_tokens" => {}
            // CLIPTextCfg fields that HFTextEncoder never reads.
            "vocab_size"
            | "width"
            | "heads"
            | "layers"
            | "mlp_ratio"
            | "pad_id"
            | "ls_init_value"
            | "embed_cls"
            | "no_causal_mask"
            | "final_ln_after_pool"
            | "pool_type"
            | "proj_bias"
            | "proj_type"
            | "act_kwargs"
            | "norm_kwargs" => {}
            "tokenizer_kwargs" => require_empty(value, "text_cfg.tokenizer_kwargs")?,
            _ => return Err(unknown_field(CTX, key)),
        }
    }
    let name = match t.get("hf_model_name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad_value("text_cfg.hf_model_name", other, "a model name")),
        None => unreachable!("parse_hf_text is only called with hf_model_name"),
    };
    match t.get("hf_pooler_type").and_then(Value::as_str) {
        None | Some("mean_pooler") => {}
        Some(other) => {
            return Err(Error::Config(format!(
                "text_cfg.hf_pooler_type \"{other}\" is not supported (dermlip has \"mean_pooler\")"
            )))
        }
    }
    let projection = match t.get("hf_proj_type") {
        None | Some(Value::Null) => HfProjection::Mlp,
        Some(v) => match v.as_str() {
            Some("mlp") => HfProjection::Mlp,
            Some("linear") => HfProjection::Linear,
            _ => return Err(bad_value("text_cfg.hf_proj_type", v, "\"mlp\" or \"linear\"")),
        },
    };
    let mut text = match text_model {
        Some(model) => parse_bert_config(model, &name)?,
        None => known_bert(&name).ok_or_else(|| {
            Error::Config(format!(
                "text_cfg.hf_model_name \"{name}\" is not a text model dermlip knows ({}); give its Hugging Face \
                 config.json",
                PUBMEDBERT_NAMES.join(", ")
            ))
        })?,
    };
    if let TextArch::Bert(b) = &mut text.arch {
        b.projection = projection;
    }
    let context_length = opt_usize(t, "context_length", CTX)?.unwrap_or(77);
    let max_positions = match &text.arch {
        TextArch::Bert(b) => b.max_positions,
        TextArch::Clip => unreachable!(),
    };
    if context_length < 2 || context_length > max_positions {
        return Err(Error::Config(format!(
            "text_cfg.context_length {context_length} must be between 2 and the BERT's {max_positions} positions"
        )));
    }
    text.context_length = context_length;
    Ok(text)
}

/// A Hugging Face `BertConfig` (`config.json`). Only the fields that change the forward pass are
/// read; a non-BERT model or a setting dermlip does not implement is refused.
fn parse_bert_config(v: &Value, name: &str) -> Result<TextConfig, Error> {
    const CTX: &str = "text model config.json";
    let m = object(v, CTX)?;
    match m.get("model_type").and_then(Value::as_str) {
        Some("bert") => {}
        other => {
            return Err(Error::Config(format!(
                "{CTX}: model_type is {other:?}, but dermlip's Hugging Face text tower is BERT (\"bert\")"
            )))
        }
    }
    match m.get("hidden_act").and_then(Value::as_str) {
        None | Some("gelu") => {}
        Some(other) => return Err(Error::Config(format!("{CTX}: hidden_act \"{other}\" is not supported (\"gelu\")"))),
    }
    match m.get("position_embedding_type").and_then(Value::as_str) {
        None | Some("absolute") => {}
        Some(other) => {
            return Err(Error::Config(format!("{CTX}: position_embedding_type \"{other}\" is not supported")))
        }
    }
    if m.get("is_decoder").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Config(format!("{CTX}: decoder BERTs are not supported")));
    }
    let hidden = opt_usize(m, "hidden_size", CTX)?.unwrap_or(768);
    let heads = opt_usize(m, "num_attention_heads", CTX)?.unwrap_or(12);
    if hidden % heads != 0 {
        return Err(Error::Config(format!(
            "{CTX}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
        )));
    }
    let layer_norm_eps = match m.get("layer_norm_eps") {
        None | Some(Value::Null) => 1e-12,
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x < 1.0 => x,
            _ => return Err(bad_value(&format!("{CTX}.layer_norm_eps"), v, "a small positive number")),
        },
    };
    let pad_token_id = match m.get("pad_token_id") {
        None | Some(Value::Null) => 0,
        Some(v) => {
            v.as_u64().filter(|&n| n < 1 << 24).ok_or_else(|| bad_value("pad_token_id", v, "a token id"))? as u32
        }
    };
    let text = TextConfig {
        arch: TextArch::Bert(BertConfig {
            model_name: name.to_string(),
            max_positions: opt_usize(m, "max_position_embeddings", CTX)?.unwrap_or(512),
            type_vocab_size: opt_usize(m, "type_vocab_size", CTX)?.unwrap_or(2),
            layer_norm_eps,
            pad_token_id,
            projection: HfProjection::Mlp,
            tokenizer: None,
        }),
        context_length: 512,
        vocab_size: opt_usize(m, "vocab_size", CTX)?.unwrap_or(30522),
        width: hidden,
        heads,
        layers: opt_usize(m, "num_hidden_layers", CTX)?.unwrap_or(12),
        mlp_width: opt_usize(m, "intermediate_size", CTX)?.unwrap_or(3072),
    };
    if pad_token_id as usize >= text.vocab_size {
        return Err(Error::Config(format!("{CTX}: pad_token_id {pad_token_id} is outside the vocabulary")));
    }
    Ok(text)
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object().ok_or_else(|| Error::Config(format!("{what} must be a JSON object")))
}

fn field<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Value, Error> {
    m.get(key).ok_or_else(|| Error::Config(format!("{ctx} has no \"{key}\"")))
}

fn req_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<usize, Error> {
    opt_usize(m, key, ctx)?.ok_or_else(|| Error::Config(format!("{ctx} has no \"{key}\"")))
}

fn opt_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<usize>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= 1 << 24 => Ok(Some(n as usize)),
            _ => Err(bad_value(&format!("{ctx}.{key}"), v, "a positive integer")),
        },
    }
}

fn opt_f64(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<f64>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(bad_value(&format!("{ctx}.{key}"), v, "a positive number")),
        },
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<bool>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad_value(&format!("{ctx}.{key}"), v, "true or false")),
    }
}

fn require_null(v: &Value, key: &str, feature: &str) -> Result<(), Error> {
    if v.is_null() {
        Ok(())
    } else {
        Err(unsupported(key, feature))
    }
}

fn require_false(v: &Value, key: &str, feature: &str) -> Result<(), Error> {
    match v {
        Value::Null | Value::Bool(false) => Ok(()),
        _ => Err(unsupported(key, feature)),
    }
}

fn require_empty(v: &Value, key: &str) -> Result<(), Error> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) if m.is_empty() => Ok(()),
        _ => Err(unsupported(key, "custom activation/norm/tokenizer arguments")),
    }
}

fn unsupported(key: &str, feature: &str) -> Error {
    Error::Config(format!("\"{key}\" asks for {feature}, which dermlip does not support"))
}

fn unknown_field(ctx: &str, key: &str) -> Error {
    Error::Config(format!("unknown field \"{key}\" in {ctx}"))
}

fn bad_value(key: &str, v: &Value, expected: &str) -> Error {
    Error::Config(format!("\"{key}\" is {v}, expected {expected}"))
}
