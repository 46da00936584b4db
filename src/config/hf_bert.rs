//! open_clip's Hugging Face text tower config (`text_cfg.hf_model_name`) and the named BERT's own
//! `config.json`, or the built-in sizes of the BERTs dermlip knows by name.

use serde_json::{Map, Value};

use super::json::{bad_value, object, opt_usize, require_empty, unknown_field};
use super::{BertConfig, HfProjection, TextArch, TextConfig};
use crate::error::Error;

/// Hugging Face BERTs whose sizes dermlip knows without their `config.json`: PubMedBERT-base
/// (uncased, 30522 tokens), as used by DermLIP-PanDerm and BiomedCLIP.
pub(super) const PUBMEDBERT_NAMES: [&str; 5] = [
    "neuml/pubmedbert-base-embeddings",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract",
    "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext",
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
    "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
];

/// BERT-base sizes for a known model name; `context_length` is left at BERT's 512.
pub(super) fn known_bert(name: &str) -> Option<TextConfig> {
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
pub(super) fn parse_hf_text(t: &Map<String, Value>, text_model: Option<&Value>) -> Result<TextConfig, Error> {
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
