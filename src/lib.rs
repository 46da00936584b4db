//! DermLIP (Derm1M, ICCV 2025) on Burn: one model graph for the native CLI, the browser and the
//! trainer. open_clip's `CLIP` (ViT image tower + CLIP text tower) and the Derm1M fork's
//! `CustomTextCLIP` (PanDerm ViT + PubMedBERT), their weight files, tokenizers and preprocessing,
//! reproduced so the numbers match open_clip's.

pub mod bert;
pub mod bundle;
pub mod clip;
pub mod concepts;
pub mod config;
pub mod error;
pub mod eval;
// Native only: it reads tensors back synchronously, which WebGPU in wasm cannot do.
#[cfg(not(target_family = "wasm"))]
pub mod export;
pub mod labels;
pub mod metrics;
pub mod ontology;
pub mod panderm;
pub mod pipeline;
pub mod plots;
pub mod preprocess;
pub mod retrieval;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vision;
#[cfg(target_family = "wasm")]
pub mod web;
pub mod weights;
pub mod wordpiece;
pub mod zero_shot;

pub use clip::{Clip, Towers};
pub use config::{Activation, ClipConfig, ModelFileConfig};
pub use error::{Error, Result};
pub use pipeline::DermLip;
