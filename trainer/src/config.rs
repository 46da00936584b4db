//! The training configuration: a TOML file, overridden by command-line flags, printed in full at
//! start and saved beside the checkpoints (`train_config.toml`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::optim::OptimConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `Derm1M_v2_pretrain.csv` (or any CSV with the image and caption columns).
    pub train_csv: Option<PathBuf>,
    /// Image folders and/or zip archives (a folder's `*.zip` files are read in place).
    pub train_images: Vec<PathBuf>,
    /// WebDataset shards instead of a CSV: `dir/shard-{00000..00099}.tar`, `::`-separated.
    pub train_shards: Option<String>,
    pub val_csv: Option<PathBuf>,
    pub val_images: Vec<PathBuf>,
    pub val_shards: Option<String>,
    pub caption_key: String,
    pub image_key: String,
    /// Validation column with the class label for zero-shot accuracy (e.g. `disease_label`).
    pub label_key: Option<String>,
    /// Zero-shot prompt templates (`{}` or `{c}` is the class name). Default: Derm1M's eight.
    pub zero_shot_templates: Vec<String>,
    pub workers: usize,
    pub prefetch: usize,
    /// Open shard files / zip archives each worker keeps (least recently used closed first).
    /// Bounds the file descriptors at `workers × max_open_files`; an archive's parsed central
    /// directory lives in its entry, and the workers' readers are reused across epochs.
    pub max_open_files: usize,
    /// Stop the run when more than this fraction of the samples read so far were skipped
    /// (unreadable or undecodable), once `skip_rate_min_samples` have been read. 1.0 = never.
    pub max_skip_rate: f64,
    pub skip_rate_min_samples: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            train_csv: None,
            train_images: Vec::new(),
            train_shards: None,
            val_csv: None,
            val_images: Vec::new(),
            val_shards: None,
            caption_key: "truncated_caption".into(),
            image_key: "filename".into(),
            label_key: None,
            zero_shot_templates: dermlip::knowledge::labels::ZERO_SHOT_TEMPLATES
                .iter()
                .map(|t| t.to_string())
                .collect(),
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(4),
            prefetch: 2,
            max_open_files: 8,
            max_skip_rate: 0.01,
            skip_rate_min_samples: 1000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `open_clip_config.json` (hub form or bare model config). Default: stock ViT-B-16.
    pub config: Option<PathBuf>,
    /// open_clip weights to start from (`open_clip_model.safetensors`, `.bin`, a training `.pt`).
    /// None = random initialisation as open_clip's.
    pub init: Option<PathBuf>,
    /// For the stock ViT-B-16 when `config` is None: OpenAI weights need QuickGELU.
    pub quick_gelu: bool,
    /// BERT `hidden_dropout_prob` (embeddings, attention output, feed-forward output) during
    /// training. None = the text model's `config.json` (0.1 for PubMedBERT, Hugging Face's default
    /// when absent). Never applied at inference or evaluation.
    pub hidden_dropout: Option<f64>,
    /// BERT `attention_probs_dropout_prob` during training; None = the text model's `config.json`.
    pub attention_dropout: Option<f64>,
    /// open_clip `vision_cfg.patch_dropout` (fraction of patch tokens dropped per image during
    /// training, ViT tower only); None = the model config's value (0 when absent).
    pub patch_dropout: Option<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            config: None,
            init: None,
            quick_gelu: true,
            hidden_dropout: None,
            attention_dropout: None,
            patch_dropout: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub output: PathBuf,
    /// `flex` (CPU), `wgpu`, `cuda` (with the `cuda` feature).
    pub device: String,
    /// Devices for data parallelism (`wgpu` indices or `cuda` ids); 1 = single device.
    pub num_devices: usize,
    pub seed: u64,
    pub epochs: usize,
    /// Global batch per optimiser step (the contrastive negatives). None = the model's Derm1M
    /// default: 4096 for an open_clip ViT (ViT-B-16.sh), 2048 for PanDerm
    /// (PanDerm-base-w-PubMed-256.sh). The resolved value is what `train_config.toml` records.
    pub batch_size: Option<usize>,
    /// Micro-batches per step (open_clip `--accum-freq`): memory of `batch_size / accum_freq`,
    /// negatives of the full `batch_size`.
    pub accum_freq: usize,
    /// Stop after this many optimiser steps (the schedule still spans all epochs).
    pub max_steps: Option<usize>,
    /// Arithmetic of the towers (open_clip `--precision`): `auto` (amp on a GPU backend whose
    /// device has the half type: bf16 on CUDA, f16 on wgpu; f32 on the CPU), `amp` (bf16 on
    /// CUDA, f16 + loss scaling elsewhere), `amp_bf16`, `amp_f16`, `f32`. Master weights, AdamW
    /// moments and the loss are always f32.
    pub precision: String,
    /// Recompute activations in the backward pass instead of keeping them (open_clip
    /// `--grad-checkpointing`; Burn's balanced gradient-checkpointing strategy).
    pub grad_checkpointing: bool,
    /// Read the loss, gradient norm and counters back (a console line, a `metrics.jsonl` line,
    /// TensorBoard scalars) every N steps; the steps between never wait for the device. 0 or 1 =
    /// every step. Checkpoints and epoch ends also read back.
    pub log_every: usize,
    /// Checkpoint every N steps (0 = only at epoch ends).
    pub checkpoint_every: usize,
    pub keep_last: usize,
    /// Evaluate every N steps (0 = only at epoch ends).
    pub eval_every: usize,
    pub export_web_bundle: bool,
    /// Consecutive non-finite steps (loss or global gradient norm NaN/inf; the update is skipped)
    /// after which the run stops with an error. 0 = never stop.
    pub max_nonfinite_steps: usize,
    /// Also write TensorBoard event files (`OUTPUT/tensorboard/`) beside `metrics.jsonl`.
    pub tensorboard: bool,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optim: OptimConfig,
    pub augment: AugmentConfig,
}

impl Default for TrainConfig {
    /// The Derm1M DermLIP ViT-B/16 recipe.
    fn default() -> Self {
        TrainConfig {
            output: PathBuf::from("runs/dermlip"),
            device: "wgpu".into(),
            num_devices: 1,
            seed: 0,
            epochs: 30,
            batch_size: None,
            accum_freq: 1,
            max_steps: None,
            precision: "auto".into(),
            grad_checkpointing: false,
            log_every: 10,
            checkpoint_every: 1000,
            keep_last: 3,
            eval_every: 0,
            export_web_bundle: true,
            max_nonfinite_steps: 10,
            tensorboard: true,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            augment: AugmentConfig::default(),
        }
    }
}

impl TrainConfig {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot print the config: {e}"))
    }

    /// The configured global batch, or the model's Derm1M default.
    pub fn effective_batch_size(&self, model: &dermlip::ClipConfig) -> usize {
        self.batch_size.unwrap_or_else(|| default_batch_size(model))
    }

    /// The fields of `saved` (a checkpoint's `train_config.toml`) that differ from `self` and
    /// that a resume cannot change without shifting the schedule, the data order/position or the
    /// model: named by their TOML path. Empty when the resume is safe.
    pub fn resume_conflicts(&self, saved: &TrainConfig) -> Vec<String> {
        let a = toml::Value::try_from(self).ok();
        let b = toml::Value::try_from(saved).ok();
        let (Some(a), Some(b)) = (a, b) else { return vec!["(config not serialisable)".into()] };
        let mut out = Vec::new();
        for key in RESUME_KEYS {
            let get = |v: &toml::Value| key.split('.').try_fold(v.clone(), |v, k| v.get(k).cloned());
            let (x, y) = (get(&a), get(&b));
            if x != y {
                let show = |v: &Option<toml::Value>| v.as_ref().map_or("(unset)".to_string(), |v| v.to_string());
                out.push(format!("{key}: {} in the checkpoint, {} now", show(&y), show(&x)));
            }
        }
        out
    }
}

/// The Derm1M scripts' global batch: 2048 for PanDerm + PubMedBERT, 4096 for ViT-B/16.
pub fn default_batch_size(model: &dermlip::ClipConfig) -> usize {
    match model.vision.arch {
        dermlip::config::VisionArch::PanDerm => 2048,
        dermlip::config::VisionArch::OpenClip => 4096,
    }
}

/// What a resumed run must share with the checkpoint's run: the schedule (`epochs`, batch, lr,
/// warmup — the cosine spans `epochs × batches per epoch`), the data order and position (seed,
/// batch size, the training set: its paths and keys), the step's gradient (accumulation,
/// clipping, the AdamW hyper-parameters, dropout) and the model. Free to change: output, device
/// and device count (the gradient is the same), workers/prefetch, logging, checkpoint and eval
/// cadence, `max_steps`, the validation set, the guards.
pub const RESUME_KEYS: &[&str] = &[
    "seed",
    "epochs",
    "batch_size",
    "accum_freq",
    "optim.lr",
    "optim.beta1",
    "optim.beta2",
    "optim.eps",
    "optim.weight_decay",
    "optim.warmup",
    "optim.grad_clip_norm",
    "data.train_csv",
    "data.train_images",
    "data.train_shards",
    "data.caption_key",
    "data.image_key",
    "model.config",
    "model.init",
    "model.quick_gelu",
    "model.hidden_dropout",
    "model.attention_dropout",
    "model.patch_dropout",
    "augment",
];
