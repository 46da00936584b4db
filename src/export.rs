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

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, Tensor, TensorData};
use serde_json::{json, Value};

use crate::bert::BertTextEncoder;
use crate::clip::{Clip, TextTower, VisionTower};
use crate::config::{
    Activation, BertConfig, ClipConfig, HfProjection, ModelFileConfig, TextArch, VisionArch, VisionPool,
};
use crate::error::{Error, Result};
use crate::panderm::PanDermVisionTransformer;
use crate::preprocess::{Interpolation, ResizeMode};
use crate::text::TextTransformer;
use crate::transformer::Transformer;
use crate::vision::VisionTransformer;
use crate::weights::StateDict;
use crate::wordpiece::TokenizerFile;

type Out = BTreeMap<String, TensorData>;

fn data<const D: usize>(t: Tensor<D>) -> TensorData {
    t.into_data().convert_dtype(DType::F32)
}

fn put<const D: usize>(out: &mut Out, key: String, p: &Param<Tensor<D>>) {
    out.insert(key, data(p.val()));
}

fn put_linear(out: &mut Out, prefix: &str, weight_key: &str, bias_key: &str, l: &Linear) -> Result<()> {
    out.insert(format!("{prefix}{weight_key}"), data(l.weight.val().transpose()));
    let bias = l.bias.as_ref().ok_or_else(|| Error::Weights(format!("{prefix}{bias_key}: the layer has no bias")))?;
    put(out, format!("{prefix}{bias_key}"), bias);
    Ok(())
}

/// A PyTorch `nn.Linear` whose bias is present exactly when `bias` names it.
fn put_linear_opt(out: &mut Out, prefix: &str, bias: bool, l: &Linear) -> Result<()> {
    out.insert(format!("{prefix}.weight"), data(l.weight.val().transpose()));
    match (&l.bias, bias) {
        (Some(b), true) => put(out, format!("{prefix}.bias"), b),
        (None, false) => {}
        (Some(_), false) => return Err(Error::Weights(format!("{prefix}: unexpected bias (open_clip has none)"))),
        (None, true) => return Err(Error::Weights(format!("{prefix}.bias: the layer has no bias"))),
    }
    Ok(())
}

fn put_layer_norm(out: &mut Out, prefix: &str, ln: &LayerNorm) -> Result<()> {
    put(out, format!("{prefix}.weight"), &ln.gamma);
    let beta = ln.beta.as_ref().ok_or_else(|| Error::Weights(format!("{prefix}: LayerNorm without bias")))?;
    put(out, format!("{prefix}.bias"), beta);
    Ok(())
}

fn put_transformer(out: &mut Out, prefix: &str, t: &Transformer) -> Result<()> {
    for (i, b) in t.resblocks.iter().enumerate() {
        let p = format!("{prefix}.resblocks.{i}");
        put_layer_norm(out, &format!("{p}.ln_1"), &b.ln_1)?;
        put_linear(out, &format!("{p}.attn."), "in_proj_weight", "in_proj_bias", &b.attn.in_proj)?;
        put_linear(out, &format!("{p}.attn.out_proj."), "weight", "bias", &b.attn.out_proj)?;
        put_layer_norm(out, &format!("{p}.ln_2"), &b.ln_2)?;
        put_linear(out, &format!("{p}.mlp.c_fc."), "weight", "bias", &b.mlp.c_fc)?;
        put_linear(out, &format!("{p}.mlp.c_proj."), "weight", "bias", &b.mlp.c_proj)?;
    }
    Ok(())
}

fn put_vision(out: &mut Out, v: &VisionTransformer) -> Result<()> {
    put(out, "visual.conv1.weight".into(), &v.conv1.weight);
    put(out, "visual.class_embedding".into(), &v.class_embedding);
    put(out, "visual.positional_embedding".into(), &v.positional_embedding);
    put_layer_norm(out, "visual.ln_pre", &v.ln_pre)?;
    put_transformer(out, "visual.transformer", &v.transformer)?;
    put_layer_norm(out, "visual.ln_post", &v.ln_post)?;
    put(out, "visual.proj".into(), &v.proj);
    Ok(())
}

fn put_text(out: &mut Out, t: &TextTransformer) -> Result<()> {
    put(out, "token_embedding.weight".into(), &t.token_embedding.weight);
    put(out, "positional_embedding".into(), &t.positional_embedding);
    put_transformer(out, "transformer", &t.transformer)?;
    put_layer_norm(out, "ln_final", &t.ln_final)?;
    put(out, "text_projection".into(), &t.text_projection);
    Ok(())
}

/// The Derm1M fork's PanDerm `VisionTransformer` under the hub names (`visual.…`).
fn put_panderm(out: &mut Out, v: &PanDermVisionTransformer) -> Result<()> {
    put(out, "visual.patch_embed.proj.weight".into(), &v.patch_embed.weight);
    let bias =
        v.patch_embed.bias.as_ref().ok_or_else(|| Error::Weights("visual.patch_embed.proj.bias: no bias".into()))?;
    put(out, "visual.patch_embed.proj.bias".into(), bias);
    let cls = v.cls_token.val();
    let width = cls.dims()[0];
    out.insert("visual.cls_token".into(), data(cls.reshape([1, 1, width])));
    let pos = v.pos_embed.val();
    let [n, w] = pos.dims();
    out.insert("visual.pos_embed".into(), data(pos.reshape([1, n, w])));
    for (i, b) in v.blocks.iter().enumerate() {
        let p = format!("visual.blocks.{i}");
        put_layer_norm(out, &format!("{p}.norm1"), &b.norm1)?;
        put_linear_opt(out, &format!("{p}.attn.qkv"), false, &b.attn.qkv)?;
        put(out, format!("{p}.attn.q_bias"), &b.attn.q_bias);
        put(out, format!("{p}.attn.v_bias"), &b.attn.v_bias);
        put_linear_opt(out, &format!("{p}.attn.proj"), true, &b.attn.proj)?;
        put_layer_norm(out, &format!("{p}.norm2"), &b.norm2)?;
        put_linear_opt(out, &format!("{p}.mlp.fc1"), true, &b.fc1)?;
        put_linear_opt(out, &format!("{p}.mlp.fc2"), true, &b.fc2)?;
        put(out, format!("{p}.gamma_1"), &b.gamma_1);
        put(out, format!("{p}.gamma_2"), &b.gamma_2);
    }
    put_layer_norm(out, "visual.norm", &v.norm)?;
    put_linear_opt(out, "visual.head", true, &v.head)
}

/// open_clip's `HFTextEncoder` over a BERT under the hub names (`text.transformer.…`, `text.proj…`).
fn put_bert(out: &mut Out, t: &BertTextEncoder) -> Result<()> {
    let e = "text.transformer.embeddings";
    put(out, format!("{e}.word_embeddings.weight"), &t.word_embeddings);
    put(out, format!("{e}.position_embeddings.weight"), &t.position_embeddings);
    put(out, format!("{e}.token_type_embeddings.weight"), &t.token_type_embeddings);
    put_layer_norm(out, &format!("{e}.LayerNorm"), &t.embeddings_norm)?;
    for (i, l) in t.layers.iter().enumerate() {
        let p = format!("text.transformer.encoder.layer.{i}");
        put_linear_opt(out, &format!("{p}.attention.self.query"), true, &l.attention.query)?;
        put_linear_opt(out, &format!("{p}.attention.self.key"), true, &l.attention.key)?;
        put_linear_opt(out, &format!("{p}.attention.self.value"), true, &l.attention.value)?;
        put_linear_opt(out, &format!("{p}.attention.output.dense"), true, &l.attention_output)?;
        put_layer_norm(out, &format!("{p}.attention.output.LayerNorm"), &l.attention_norm)?;
        put_linear_opt(out, &format!("{p}.intermediate.dense"), true, &l.intermediate)?;
        put_linear_opt(out, &format!("{p}.output.dense"), true, &l.output)?;
        put_layer_norm(out, &format!("{p}.output.LayerNorm"), &l.output_norm)?;
    }
    match &t.proj_out {
        Some(out_layer) => {
            put_linear_opt(out, "text.proj.0", false, &t.proj_in)?;
            put_linear_opt(out, "text.proj.2", false, out_layer)
        }
        None => put_linear_opt(out, "text.proj", false, &t.proj_in),
    }
}

/// The model's weights under open_clip's state-dict names (`CLIP` for ViT + CLIP text,
/// `CustomTextCLIP` for PanDerm + BERT), f32, PyTorch layouts.
pub fn clip_state_dict(model: &Clip) -> Result<StateDict> {
    let mut out = Out::new();
    match &model.visual {
        VisionTower::Vit(v) => put_vision(&mut out, v)?,
        VisionTower::PanDerm(v) => put_panderm(&mut out, v)?,
    }
    match &model.text {
        TextTower::Clip(t) => put_text(&mut out, t)?,
        TextTower::Bert(t) => put_bert(&mut out, t)?,
    }
    let scale = model
        .logit_scale
        .val()
        .into_data()
        .convert_dtype(DType::F32)
        .try_to_vec::<f32>()
        .map_err(|e| Error::Weights(format!("logit_scale: {e:?}")))?;
    out.insert("logit_scale".into(), TensorData::new(vec![scale[0]], [0usize; 0]));
    Ok(StateDict::from_tensors(out))
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

/// Writes `open_clip_model.safetensors` and the [`checkpoint_config_files`]
/// (`open_clip_config.json`; for a BERT text tower also `config.json` and the tokenizer file)
/// into `dir` (native only): a directory `DermLip::load` and open_clip re-load.
#[cfg(not(target_family = "wasm"))]
pub fn save_open_clip(model: &Clip, cfg: &ModelFileConfig, dir: &std::path::Path) -> Result<()> {
    let io =
        |p: &std::path::Path, e: std::io::Error| Error::Io { path: p.display().to_string(), message: e.to_string() };
    let configs = checkpoint_config_files(cfg)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let bytes = clip_state_dict(model)?.to_safetensors_bytes()?;
    let weights = dir.join("open_clip_model.safetensors");
    write_atomic(&weights, &bytes).map_err(|e| io(&weights, e))?;
    for (name, bytes) in configs {
        let path = dir.join(name);
        write_atomic(&path, &bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Temp file in the same folder, fsync, rename: a reader never sees a half-written file.
#[cfg(not(target_family = "wasm"))]
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
