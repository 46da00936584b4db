//! DermLIP (Derm1M, ICCV 2025) on Burn: one model graph for the native CLI, the browser and the
//! trainer. open_clip's `CLIP` (ViT image tower + CLIP text tower) and the Derm1M fork's
//! `CustomTextCLIP` (PanDerm ViT + PubMedBERT), their weight files, tokenizers and preprocessing,
//! reproduced so the numbers match open_clip's.
//!
//! The folders are layers; a module imports only from layers below it (ARCHITECTURE.md):
//! `limits` → `error` → `config` → `input` (preprocess, tokenizer) and `weights` → `model` → `checkpoint` →
//! `pipeline` → `bundle` → the entry points (`web`, `src/bin/`); `knowledge` → `eval` beside them.

pub mod bundle;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod eval;
pub mod input;
pub mod knowledge;
pub mod limits;
pub mod model;
pub mod pipeline;
#[cfg(target_family = "wasm")]
pub mod web;
pub mod weights;

pub use config::{Activation, ClipConfig, ModelFileConfig};
pub use error::{Error, Result};
pub use model::clip::{Clip, Towers};
pub use pipeline::DermLip;
