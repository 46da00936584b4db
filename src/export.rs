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

use std::collections::BTreeMap;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, Tensor, TensorData};
use serde_json::{json, Value};

use crate::clip::Clip;
use crate::config::{Activation, ClipConfig, ModelFileConfig, TextArch, VisionArch, VisionPool};
use crate::error::{Error, Result};
use crate::preprocess::{Interpolation, ResizeMode};
use crate::text::TextTransformer;
use crate::transformer::Transformer;
use crate::vision::VisionTransformer;
use crate::weights::StateDict;

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

/// The model's weights under open_clip's `CLIP` state-dict names, f32, PyTorch layouts.
pub fn clip_state_dict(model: &Clip) -> Result<StateDict> {
    let mut out = Out::new();
    let vision = model.visual.vit().ok_or_else(|| {
        Error::Weights("export to open_clip: only the open_clip ViT image tower is supported (not PanDerm)".into())
    })?;
    let text = model.text.clip().ok_or_else(|| {
        Error::Weights("export to open_clip: only the CLIP text tower is supported (not a Hugging Face BERT)".into())
    })?;
    put_vision(&mut out, vision)?;
    put_text(&mut out, text)?;
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
/// open_clip and by [`ModelFileConfig::from_json_str`].
pub fn open_clip_config(cfg: &ModelFileConfig) -> Result<Value> {
    let m: &ClipConfig = &cfg.model;
    if m.vision.arch != VisionArch::OpenClip || m.text.arch != TextArch::Clip {
        return Err(Error::Config(
            "open_clip_config.json export: only open_clip ViT + CLIP text models are supported".into(),
        ));
    }
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
    if v.pool == VisionPool::Avg {
        vision["pool_type"] = json!("avg");
    }
    if v.final_ln_after_pool {
        vision["final_ln_after_pool"] = json!(true);
    }
    let text = json!({
        "context_length": t.context_length,
        "vocab_size": t.vocab_size,
        "width": t.width,
        "heads": t.heads,
        "layers": t.layers,
        "mlp_ratio": t.mlp_width as f64 / t.width as f64,
    });
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

/// Writes `open_clip_model.safetensors` and `open_clip_config.json` into `dir` (native only).
#[cfg(not(target_family = "wasm"))]
pub fn save_open_clip(model: &Clip, cfg: &ModelFileConfig, dir: &std::path::Path) -> Result<()> {
    let io =
        |p: &std::path::Path, e: std::io::Error| Error::Io { path: p.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let bytes = clip_state_dict(model)?.to_safetensors_bytes()?;
    let weights = dir.join("open_clip_model.safetensors");
    write_atomic(&weights, &bytes).map_err(|e| io(&weights, e))?;
    let config = dir.join("open_clip_config.json");
    let text = serde_json::to_string_pretty(&open_clip_config(cfg)?).map_err(|e| Error::Weights(e.to_string()))?;
    write_atomic(&config, text.as_bytes()).map_err(|e| io(&config, e))?;
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
