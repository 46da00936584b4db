//! Checkpoints on disk (native only): an open_clip checkpoint directory (`open_clip_config.json`,
//! the weights and, for a BERT text tower, its `config.json` and tokenizer file) located, read
//! into a [`ModelFileConfig`] and a [`StateDict`], and written from a model ([`export`] turns the
//! model into open_clip's names and config files). Every file is written atomically.
//!
//! Native only: it reads files and reads tensors back synchronously, which WebGPU in wasm cannot do.
#![cfg(not(target_family = "wasm"))]

pub mod export;

use std::path::{Path, PathBuf};

use crate::config::{ModelFileConfig, TextArch, TokenizerFile};
use crate::error::{Error, Result};
use crate::model::clip::Clip;
use crate::weights::StateDict;

/// The model config of a checkpoint directory.
pub const CONFIG_FILE: &str = "open_clip_config.json";
/// The Hugging Face config of a BERT text tower, beside [`CONFIG_FILE`].
pub const TEXT_MODEL_CONFIG_FILE: &str = "config.json";
/// The weight files of a checkpoint directory, in order of preference (the first is what
/// [`save_open_clip`] writes).
pub const WEIGHTS_FILES: [&str; 2] = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"];

/// A checkpoint directory (`open_clip_config.json` + weights) or a weights file whose directory
/// holds the config → (directory, weights file). Weights: `open_clip_model.safetensors`, else
/// `open_clip_pytorch_model.bin`, else a single `.pt`/`.pth`/`.bin`/`.safetensors` file.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Io { path: shown.clone(), message: format!("no such model: {e}") })?;
    if meta.is_file() {
        let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_else(|| ".".into());
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        return Ok((dir, path.to_path_buf()));
    }
    for name in WEIGHTS_FILES {
        let p = path.join(name);
        if p.is_file() {
            return Ok((path.to_path_buf(), p));
        }
    }
    let mut others: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::Io { path: shown.clone(), message: e.to_string() })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "pth" | "bin" | "safetensors")))
        .collect();
    others.sort();
    match others.len() {
        1 => Ok((path.to_path_buf(), others.remove(0))),
        0 => Err(Error::Io {
            path: shown,
            message: "no weights found (expected open_clip_model.safetensors or open_clip_pytorch_model.bin)".into(),
        }),
        _ => Err(Error::Io {
            path: shown,
            message: format!(
                "several weight files and no open_clip_model.safetensors; name one: {}",
                others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// The config and the weights of a checkpoint ([`locate`]'s directory or weights file).
pub fn read(path: &Path) -> Result<(ModelFileConfig, StateDict)> {
    let (dir, weights_path) = locate(path)?;
    let file_config = ModelFileConfig::from_checkpoint_dir(&dir)?;
    // Names, shapes and total size are checked against the config before any tensor is read.
    let mut expected = crate::weights::ExpectedTensors::default();
    Clip::new(&file_config.model, &burn::tensor::Device::flex())
        .visit_tensors(&mut expected, crate::model::clip::Towers::Both)?;
    let weights = StateDict::from_file_expecting(&weights_path, &expected)?;
    Ok((file_config, weights))
}

impl ModelFileConfig {
    /// The config files of a checkpoint directory: `open_clip_config.json`; for a BERT text tower
    /// also its Hugging Face `config.json` (if present) and `tokenizer.json` (else `vocab.txt`).
    pub fn from_checkpoint_dir(dir: &Path) -> Result<Self> {
        Self::from_config_file(&dir.join(CONFIG_FILE))
    }

    /// An `open_clip_config.json` under any file name and, for a BERT text tower, the
    /// `config.json` (if present) and tokenizer file beside it.
    pub fn from_config_file(config_path: &Path) -> Result<Self> {
        let dir = config_path.parent().unwrap_or(Path::new("."));
        let text = std::fs::read_to_string(config_path).map_err(|e| Error::Io {
            path: config_path.display().to_string(),
            message: format!("cannot read the model config: {e}"),
        })?;
        // A CLIP checkpoint never reads config.json (it may be some other tool's file).
        let text_model_path = dir.join(TEXT_MODEL_CONFIG_FILE);
        let text_model = match text.contains("\"hf_model_name\"") {
            true => read_optional(&text_model_path)?
                .map(|b| String::from_utf8(b).map_err(|_| io_error(&text_model_path, "not UTF-8")))
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
}

/// `tokenizer.json`, else `vocab.txt`, from a checkpoint directory.
fn read_tokenizer_file(dir: &Path) -> Result<TokenizerFile> {
    for name in TokenizerFile::FILE_NAMES {
        let path = dir.join(name);
        if let Some(bytes) = read_optional(&path)? {
            return TokenizerFile::from_named_bytes(name, bytes).map_err(|e| io_error(&path, &e.to_string()));
        }
    }
    Err(io_error(dir, "no tokenizer.json or vocab.txt for the BERT text tower"))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, &e.to_string())),
    }
}

fn io_error(path: &Path, message: &str) -> Error {
    Error::Io { path: path.display().to_string(), message: message.to_string() }
}

/// Writes `open_clip_model.safetensors` and the [`export::checkpoint_config_files`]
/// (`open_clip_config.json`; for a BERT text tower also `config.json` and the tokenizer file)
/// into `dir`: a directory `DermLip::load` and open_clip re-load.
pub fn save_open_clip(model: &Clip, cfg: &ModelFileConfig, dir: &Path) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::Io { path: p.display().to_string(), message: e.to_string() };
    let configs = export::checkpoint_config_files(cfg)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let bytes = export::clip_state_dict(model)?.to_safetensors_bytes()?;
    let weights = dir.join(WEIGHTS_FILES[0]);
    write_atomic(&weights, &bytes).map_err(|e| io(&weights, e))?;
    for (name, bytes) in configs {
        let path = dir.join(name);
        write_atomic(&path, &bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Temp file in the same folder, fsync, rename: a reader never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
