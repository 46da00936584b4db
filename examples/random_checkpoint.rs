//! Writes a full-size DermLIP PanDerm-base + PubMedBERT-256 checkpoint with random weights (the
//! released config; the tokenizer file of the tiny fixture, whose ids fit PubMedBERT's vocabulary),
//! for measuring bundle sizes and browser load times without the real checkpoint.
//!
//!     cargo run --release --example random_panderm -- OUT_DIR

use burn::tensor::Device;
use dermlip::wordpiece::TokenizerFile;
use dermlip::{Clip, ModelFileConfig};

const CONFIG: &str = r#"{"model_cfg": {"embed_dim": 512,
  "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16, "pretrain_path": null},
  "text_cfg": {"context_length": 256, "hf_model_name": "neuml/pubmedbert-base-embeddings",
               "hf_tokenizer_name": "neuml/pubmedbert-base-embeddings", "hf_pooler_type": "mean_pooler"}},
  "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                     "interpolation": "bicubic", "resize_mode": "shortest"}}"#;

fn main() {
    let Some(out) = std::env::args().nth(1) else {
        eprintln!("usage: random_panderm OUT_DIR");
        std::process::exit(2);
    };
    let tokenizer =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/tiny-panderm/tokenizer.json"))
            .expect("the fixture tokenizer");
    let cfg = ModelFileConfig::from_json_str(CONFIG)
        .expect("the released config")
        .with_tokenizer(TokenizerFile::from_named_bytes("tokenizer.json", tokenizer).expect("tokenizer"));
    let model = Clip::new(&cfg.model, &Device::flex());
    dermlip::export::save_open_clip(&model, &cfg, std::path::Path::new(&out)).expect("export");
    println!("wrote {out}");
}
