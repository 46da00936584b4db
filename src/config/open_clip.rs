//! The open_clip JSON: `open_clip_config.json` (hub form or bare model config) → [`ModelFileConfig`].

use serde_json::{Map, Value};

use super::hf_bert::parse_hf_text;
use super::json::{
    bad_value, field, object, opt_bool, opt_f64, opt_usize, req_usize, require_empty, require_false, require_null,
    unknown_field, unsupported,
};
use super::{
    Activation, ClipConfig, Interpolation, ModelFileConfig, PreprocessConfig, ResizeMode, TextArch, TextConfig,
    VisionArch, VisionConfig, VisionPool,
};
use crate::error::{Error, PreprocessError};

impl ClipConfig {
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

impl PreprocessConfig {
    /// Reads open_clip's `preprocess_cfg` object (`{"mean", "std", "interpolation", "resize_mode",
    /// optional "size"}`). Missing keys take open_clip's defaults. `image_size` is the model's input
    /// size, used when the object has no `size`.
    pub fn from_open_clip(value: &serde_json::Value, image_size: u32) -> Result<Self, PreprocessError> {
        let err = |m: String| PreprocessError::Config(m);
        let obj = value.as_object().ok_or_else(|| err(format!("preprocess_cfg must be an object, got {value}")))?;
        let mut cfg = Self { size: image_size, ..Self::default() };
        if let Some(v) = obj.get("size").filter(|v| !v.is_null()) {
            cfg.size =
                parse_size(v).ok_or_else(|| err(format!("size must be an integer or a square [h, w], got {v}")))?;
        }
        for (key, slot) in [("mean", &mut cfg.mean), ("std", &mut cfg.std)] {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                *slot = parse_triple(v).ok_or_else(|| err(format!("{key} must be a number or 3 numbers, got {v}")))?;
            }
        }
        if let Some(v) = obj.get("interpolation").filter(|v| !v.is_null()) {
            cfg.interpolation = match v.as_str() {
                Some("bicubic") | Some("random") => Interpolation::Bicubic, // open_clip: random -> bicubic at eval
                Some("bilinear") => Interpolation::Bilinear,
                _ => return Err(err(format!("unsupported interpolation {v} (expected \"bicubic\" or \"bilinear\")"))),
            };
        }
        if let Some(v) = obj.get("resize_mode").filter(|v| !v.is_null()) {
            cfg.resize_mode = match v.as_str() {
                Some("shortest") => ResizeMode::Shortest,
                Some("squash") => ResizeMode::Squash,
                _ => return Err(err(format!("unsupported resize_mode {v} (expected \"shortest\" or \"squash\")"))),
            };
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn parse_size(v: &serde_json::Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok();
    }
    match v.as_array()?.as_slice() {
        [h, w] if h == w => u32::try_from(h.as_u64()?).ok(),
        _ => None,
    }
}

fn parse_triple(v: &serde_json::Value) -> Option<[f32; 3]> {
    if let Some(x) = v.as_f64() {
        return Some([x as f32; 3]);
    }
    match v.as_array()?.as_slice() {
        [a, b, c] => Some([a.as_f64()? as f32, b.as_f64()? as f32, c.as_f64()? as f32]),
        _ => None,
    }
}
