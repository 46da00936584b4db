//! Model configuration as open_clip writes it: either a hub `open_clip_config.json`
//! (`{"model_cfg": …, "preprocess_cfg": …}`) or a bare model config (`{"embed_dim": …}`).
//!
//! Every key open_clip knows is either honoured, accepted because it does not change inference,
//! or refused with a message naming it. Keys nobody knows are refused too: a typo must not
//! silently fall back to a default and build a different network.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::preprocess::PreprocessConfig;

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

#[derive(Clone, Debug, PartialEq)]
pub struct VisionConfig {
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

#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
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

/// Everything a checkpoint directory's `open_clip_config.json` tells us.
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
                context_length: 77,
                vocab_size: 49408,
                width: 512,
                heads: 8,
                layers: 12,
                mlp_width: 2048,
            },
        }
    }

    /// Parses a bare open_clip model config (the `model_cfg` object).
    pub fn from_open_clip(cfg: &Value) -> Result<Self, Error> {
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
        let text = parse_text(object(field(top, "text_cfg", "model config")?, "text_cfg")?)?;
        Ok(ClipConfig { embed_dim, activation, vision, text })
    }
}

impl ModelFileConfig {
    /// Parses `open_clip_config.json` text: the hub form or a bare model config.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config(format!("not valid JSON: {e}")))?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, Error> {
        let top = object(value, "open_clip_config.json")?;
        if let Some(model_cfg) = top.get("model_cfg") {
            for key in top.keys() {
                if key != "model_cfg" && key != "preprocess_cfg" {
                    return Err(unknown_field("open_clip_config.json", key));
                }
            }
            let model = ClipConfig::from_open_clip(model_cfg)?;
            let preprocess = match top.get("preprocess_cfg") {
                Some(p) => PreprocessConfig::from_open_clip(p, model.vision.image_size as u32)?,
                None => default_preprocess(&model),
            };
            Ok(ModelFileConfig { model, preprocess })
        } else {
            let model = ClipConfig::from_open_clip(value)?;
            let preprocess = default_preprocess(&model);
            Ok(ModelFileConfig { model, preprocess })
        }
    }
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
            // Training-only (dropout of patches, init paths) or output-format switches.
            "patch_dropout" | "output_tokens" | "pretrain_path" => {}
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
    Ok(VisionConfig {
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
        context_length,
        vocab_size: opt_usize(t, "vocab_size", CTX)?.unwrap_or(49408),
        width,
        heads,
        layers: opt_usize(t, "layers", CTX)?.unwrap_or(12),
        mlp_width: (width as f64 * mlp_ratio) as usize,
    })
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
