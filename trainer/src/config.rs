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
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { config: None, init: None, quick_gelu: true }
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
    /// Global batch per optimiser step (the contrastive negatives).
    pub batch_size: usize,
    /// Micro-batches per step (open_clip `--accum-freq`): memory of `batch_size / accum_freq`,
    /// negatives of the full `batch_size`.
    pub accum_freq: usize,
    /// Stop after this many optimiser steps (the schedule still spans all epochs).
    pub max_steps: Option<usize>,
    pub log_every: usize,
    /// Checkpoint every N steps (0 = only at epoch ends).
    pub checkpoint_every: usize,
    pub keep_last: usize,
    /// Evaluate every N steps (0 = only at epoch ends).
    pub eval_every: usize,
    pub export_web_bundle: bool,
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
            batch_size: 4096,
            accum_freq: 1,
            max_steps: None,
            log_every: 10,
            checkpoint_every: 1000,
            keep_last: 3,
            eval_every: 0,
            export_web_bundle: true,
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
}
