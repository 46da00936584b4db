//! The core crate's integration tests, in one test binary: each file below was its own binary,
//! and each linked (and re-monomorphised) Burn on its own, which cost minutes of every cold build.
//! `tests/f16_compute.rs` stays a binary of its own: the device's float type is set once per
//! process. Run one file's tests with a filter: `cargo test --test suite model_parity::`.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod bad_input;
mod cli_fetch_convert;
mod concepts;
mod doc_links;
mod eval;
mod eval_commands;
mod export_roundtrip;
mod hostile_images;
mod hostile_text;
mod hostile_weights;
mod kernels;
mod knowledge;
mod metrics_parity;
mod model_parity;
mod panderm_parity;
mod preprocess_parity;
mod retrieval;
mod tokenizer_parity;
mod web_bundle;
mod wordpiece_parity;
