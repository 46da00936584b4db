//! The reverse of loading: a [`Clip`] as an open_clip state dict (PyTorch names and layouts) and
//! its `open_clip_config.json`, so a model trained or converted here can be saved as
//! `open_clip_model.safetensors` and opened by open_clip (`create_model_and_transforms(
//! "hf-hub:…")` / `load_checkpoint`) or by [`Clip::from_state_dict`] again.
//!
//! Layouts: Burn's `Linear` holds `[in, out]`, PyTorch's `[out, in]`, so every linear weight
//! (`in_proj_weight`, `out_proj`, `c_fc`, `c_proj`) is transposed back; LayerNorm `gamma`/`beta`
//! become `weight`/`bias`; `logit_scale` is written 0-d as open_clip stores it. Raw parameters
//! (`class_embedding`, `positional_embedding`, `proj`, `text_projection`, the conv and the token
//! embedding) keep their layout.
//!
//! Both model classes: open_clip's `CLIP` (ViT + CLIP text) and the Derm1M fork's `CustomTextCLIP`
//! (PanDerm ViT + Hugging Face BERT) under the hub's names (`visual.blocks.N.attn.qkv.weight`,
//! `text.transformer.encoder.layer.N.…`, `text.proj.0.weight`, …; PanDerm's `cls_token` and
//! `pos_embed` get their leading `[1, 1, …]` / `[1, …]` dimensions back). The BERT buffers
//! `position_ids` / `token_type_ids` that some transformers versions save are not parameters and
//! are not written (open_clip's `load_checkpoint` accepts the state dict with or without them). A
//! BERT checkpoint directory also gets the text model's Hugging Face `config.json` and its
//! tokenizer file ([`checkpoint_config_files`]).
//!
//! The names and layouts themselves live with the towers: each module's `visit_tensors` (in `model/`)
//! lists its tensors once, for loading and saving alike; this file drives that walk with a
//! writer and assembles the config files.

use serde_json::{json, Value};

use crate::config::{
    Activation, BertConfig, ClipConfig, HfProjection, ModelFileConfig, TextArch, VisionArch, VisionPool,
};
use crate::error::{Error, Result};
use crate::input::preprocess::{Interpolation, ResizeMode};
use crate::input::tokenizer::wordpiece::TokenizerFile;
use crate::model::clip::{Clip, Towers};
use crate::weights::{StateDict, StateDictWriter};

/// The model's weights under open_clip's state-dict names (`CLIP` for ViT + CLIP text,
/// `CustomTextCLIP` for PanDerm + BERT), f32, PyTorch layouts: the towers' own walk
/// ([`Clip::visit_tensors`]) with a [`StateDictWriter`].
pub fn clip_state_dict(model: &Clip) -> Result<StateDict> {
    let mut writer = StateDictWriter::default();
    // A module clone shares its tensors: nothing is copied.
    model.clone().visit_tensors(&mut writer, Towers::Both)?;
    Ok(writer.into_state_dict())
}

/// `open_clip_config.json` (`{"model_cfg", "preprocess_cfg"}`) describing `cfg`, readable by
/// open_clip (the Derm1M fork for PanDerm) and by [`ModelFileConfig::from_json_str`] (for a BERT
/// text tower whose name dermlip does not know, together with [`bert_config_json`]).
pub fn open_clip_config(cfg: &ModelFileConfig) -> Result<Value> {
    let m: &ClipConfig = &cfg.model;
    let v = &m.vision;
    let t = &m.text;
    let mut vision = json!({
        "image_size": v.image_size,
        "layers": v.layers,
        "width": v.width,
        "head_width": v.width / v.heads,
        "mlp_ratio": v.mlp_width as f64 / v.width as f64,
        "patch_size": v.patch_size,
    });
    match v.arch {
        VisionArch::OpenClip => {
            if v.pool == VisionPool::Avg {
                vision["pool_type"] = json!("avg");
            }
            if v.final_ln_after_pool {
                vision["final_ln_after_pool"] = json!(true);
            }
        }
        // The fork's PanDerm marker (its factory reads the key; null = no separate init file).
        VisionArch::PanDerm => vision["pretrain_path"] = Value::Null,
    }
    let text = match &t.arch {
        TextArch::Clip => json!({
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_width as f64 / t.width as f64,
        }),
        TextArch::Bert(b) => json!({
            "context_length": t.context_length,
            "hf_model_name": b.model_name,
            "hf_tokenizer_name": b.model_name,
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": match b.projection { HfProjection::Mlp => "mlp", HfProjection::Linear => "linear" },
        }),
    };
    let mut model_cfg = json!({ "embed_dim": m.embed_dim, "vision_cfg": vision, "text_cfg": text });
    if m.activation == Activation::QuickGelu {
        model_cfg["quick_gelu"] = json!(true);
    }
    let p = &cfg.preprocess;
    Ok(json!({
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": p.size,
            "mean": p.mean,
            "std": p.std,
            "interpolation": match p.interpolation { Interpolation::Bicubic => "bicubic", Interpolation::Bilinear => "bilinear" },
            "resize_mode": match p.resize_mode { ResizeMode::Shortest => "shortest", ResizeMode::Squash => "squash" },
        }
    }))
}

/// The Hugging Face `config.json` of a BERT text tower (what
/// [`ModelFileConfig::from_checkpoint_dir`] reads beside `open_clip_config.json`); `None` for the
/// CLIP text tower.
pub fn bert_config_json(cfg: &ClipConfig) -> Option<Value> {
    let TextArch::Bert(b) = &cfg.text.arch else { return None };
    let t = &cfg.text;
    let BertConfig { max_positions, type_vocab_size, layer_norm_eps, pad_token_id, .. } = b;
    Some(json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "is_decoder": false,
        "hidden_size": t.width,
        "num_attention_heads": t.heads,
        "num_hidden_layers": t.layers,
        "intermediate_size": t.mlp_width,
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab_size,
        "layer_norm_eps": layer_norm_eps,
        "pad_token_id": pad_token_id,
        "vocab_size": t.vocab_size,
    }))
}

/// The config files of a checkpoint directory, `(file name, bytes)`: `open_clip_config.json`, and
/// for a BERT text tower its `config.json` and tokenizer file (`tokenizer.json` or `vocab.txt`,
/// as loaded; a BERT config without a tokenizer file is an error: the directory could not be
/// re-loaded with its text tower).
pub fn checkpoint_config_files(cfg: &ModelFileConfig) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).map_err(|e| Error::Weights(e.to_string()));
    let mut files = vec![("open_clip_config.json", pretty(&open_clip_config(cfg)?)?)];
    if let TextArch::Bert(b) = &cfg.model.text.arch {
        let bert = bert_config_json(&cfg.model).expect("a BERT text tower");
        files.push(("config.json", pretty(&bert)?));
        match &b.tokenizer {
            Some(TokenizerFile::Json(bytes)) => files.push(("tokenizer.json", bytes.clone())),
            Some(TokenizerFile::VocabTxt(text)) => files.push(("vocab.txt", text.as_bytes().to_vec())),
            None => {
                return Err(Error::Config(
                    "export: the BERT text tower has no tokenizer file (tokenizer.json or vocab.txt) to write".into(),
                ))
            }
        }
    }
    Ok(files)
}
