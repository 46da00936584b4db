//! The run's checkpoints: `output/checkpoints/step-NNNNNNNN/`, each an open_clip checkpoint
//! directory (weights and config files, written by `dermlip::checkpoint::save_open_clip`, so it
//! loads like a hub one) plus what an exact resume needs: the optimiser state, `state.json` and
//! the run's `train_config.toml`. A checkpoint is written into a temporary folder and renamed
//! into place (then the parent folder is fsync'ed, so the rename itself survives a power loss),
//! so an interrupted save never leaves a half-written `step-…` folder; the `.step-….tmp` folders
//! a crash leaves behind are removed when a run starts or resumes ([`remove_stale_temp_dirs`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dermlip::checkpoint::{save_open_clip, write_atomic, WEIGHTS_FILES};
use dermlip::weights::StateDict;
use dermlip::{Clip, ModelFileConfig};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::optim::AdamW;
use crate::train::Result;

/// Where a run stands; saved in each checkpoint as `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: usize,
    /// Next batch to train on: epoch and batch index within it.
    pub epoch: usize,
    pub batch: usize,
    pub samples_seen: u64,
    /// Samples left out (unreadable, refused or undecodable), I/O errors included.
    pub skipped_this_epoch: usize,
    pub skipped_total: usize,
    /// The skipped samples that were I/O errors.
    pub io_errors_this_epoch: usize,
    pub io_errors_total: usize,
    /// Steps whose update was skipped for a non-finite loss or gradient norm: in all, and the
    /// current run of consecutive ones.
    pub nonfinite_total: usize,
    pub nonfinite_in_a_row: usize,
    /// Mixed precision with f16: the loss scale, the steps since its last change (GradScaler's
    /// growth tracker) and the overflowing steps skipped in all. `None` without loss scaling.
    pub loss_scale: Option<f64>,
    pub scaler_good_steps: u64,
    pub scaler_skips_total: u64,
}

/// The complete checkpoints under `root` (those with a `state.json`), oldest first.
fn checkpoint_dirs(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path().join("state.json").is_file().then_some((step, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// The newest complete checkpoint under `output/checkpoints`.
pub fn latest_checkpoint(output: &Path) -> Option<PathBuf> {
    checkpoint_dirs(&output.join("checkpoints")).pop().map(|(_, p)| p)
}

/// Saves the run at `state` and keeps the newest `keep_last` checkpoints.
pub fn save_checkpoint(
    cfg: &TrainConfig,
    file_cfg: &ModelFileConfig,
    model: &Clip,
    optim: &AdamW,
    state: &TrainState,
) -> Result<PathBuf> {
    let root = cfg.output.join("checkpoints");
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let final_dir = root.join(format!("step-{:08}", state.step));
    let tmp = root.join(format!(".step-{:08}.tmp", state.step));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let w = |name: &str, bytes: &[u8]| write_atomic(&tmp.join(name), bytes).map_err(|e| format!("{name}: {e}"));
    // open_clip_model.safetensors, open_clip_config.json (+ a BERT's config.json and tokenizer):
    // the folder loads like a hub one.
    save_open_clip(model, file_cfg, &tmp).map_err(|e| e.to_string())?;
    let opt_bytes = StateDict::from_tensors(optim.state_tensors()).to_safetensors_bytes();
    // An optimiser with no state yet (step 0) has no tensors: write an empty marker instead.
    match opt_bytes {
        Ok(b) if !optim.state_tensors_is_empty() => w("optimizer.safetensors", &b)?,
        _ => {}
    }
    #[derive(Serialize)]
    struct Saved<'a> {
        state: &'a TrainState,
        optimizer_step: u64,
    }
    w(
        "state.json",
        serde_json::to_string_pretty(&Saved { state, optimizer_step: optim.steps_taken() }).unwrap().as_bytes(),
    )?;
    w("train_config.toml", cfg.to_toml().as_bytes())?;
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir).map_err(|e| format!("{}: {e}", final_dir.display()))?;
    fsync_dir(&root).map_err(|e| format!("fsync {}: {e}", root.display()))?;
    let dirs = checkpoint_dirs(&root);
    if cfg.keep_last > 0 && dirs.len() > cfg.keep_last {
        for (_, old) in &dirs[..dirs.len() - cfg.keep_last] {
            let _ = fs::remove_dir_all(old);
        }
    }
    Ok(final_dir)
}

/// Makes a rename (or creation/removal) inside `dir` durable: fsync of the directory itself.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes the `.step-NNNNNNNN.tmp` folders under `output/checkpoints` that an interrupted save
/// left behind (a complete checkpoint is never a `.tmp`). Returns the folders removed.
pub fn remove_stale_temp_dirs(output: &Path) -> Vec<PathBuf> {
    let root = output.join("checkpoints");
    let mut removed = Vec::new();
    for e in fs::read_dir(&root).into_iter().flatten().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".step-") && name.ends_with(".tmp") && fs::remove_dir_all(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    if !removed.is_empty() {
        let _ = fsync_dir(&root);
    }
    removed.sort();
    removed
}

/// The `train_config.toml` a checkpoint was saved with (None for a checkpoint without one).
pub fn saved_config(dir: &Path) -> Result<Option<TrainConfig>> {
    let path = dir.join("train_config.toml");
    if !path.is_file() {
        return Ok(None);
    }
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    TrainConfig::from_toml(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Refuses to resume from `dir` when the run's config differs from the checkpoint's in a field
/// that shifts the schedule, the data position or the model ([`TrainConfig::resume_conflicts`]),
/// unless `allow` (`--allow-config-change`). Returns the differences (to log when allowed).
pub fn check_resume_config(cfg: &TrainConfig, dir: &Path, allow: bool) -> Result<Vec<String>> {
    let Some(saved) = saved_config(dir)? else { return Ok(Vec::new()) };
    let diffs = cfg.resume_conflicts(&saved);
    if !diffs.is_empty() && !allow {
        return Err(format!(
            "refusing to resume from {}: the config changed in {} field(s) that shift the schedule, the data \
             position or the model:\n  {}\n(restore them, or pass --allow-config-change to resume anyway)",
            dir.display(),
            diffs.len(),
            diffs.join("\n  ")
        ));
    }
    Ok(diffs)
}

/// The model, optimiser state and [`TrainState`] of a checkpoint, to resume the run exactly.
pub fn load_checkpoint(
    dir: &Path,
    file_cfg: &ModelFileConfig,
    optim: &mut AdamW,
    device: &Device,
) -> Result<(Clip, TrainState)> {
    let sd = StateDict::from_file(&dir.join(WEIGHTS_FILES[0])).map_err(|e| e.to_string())?;
    let model = Clip::from_state_dict(&file_cfg.model, sd, device).map_err(|e| e.to_string())?;
    #[derive(Deserialize)]
    struct Saved {
        state: TrainState,
        optimizer_step: u64,
    }
    let text = fs::read_to_string(dir.join("state.json")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let saved: Saved = serde_json::from_str(&text).map_err(|e| format!("state.json: {e}"))?;
    let opt_path = dir.join("optimizer.safetensors");
    let tensors = if opt_path.is_file() {
        let bytes = fs::read(&opt_path).map_err(|e| format!("{}: {e}", opt_path.display()))?;
        let sd = StateDict::from_safetensors_bytes(bytes).map_err(|e| e.to_string())?;
        let keys: Vec<String> = sd.keys().cloned().collect();
        let mut sd = sd;
        keys.into_iter().filter_map(|k| sd.remove(&k).map(|d| (k, d))).collect()
    } else {
        BTreeMap::new()
    };
    optim.load_state_tensors(tensors, saved.optimizer_step, device);
    Ok((model, saved.state))
}
