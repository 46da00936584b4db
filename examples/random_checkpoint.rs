//! Writes a full-size checkpoint with random weights in open_clip's format, for measuring bundle
//! sizes and browser load and inference times without the real DermLIP checkpoints:
//! `vit-b-16` (open_clip ViT-B-16, as DermLIP_ViT-B-16) or `panderm` (DermLIP PanDerm-base +
//! PubMedBERT-256, with the tiny fixture's tokenizer file, whose ids fit PubMedBERT's vocabulary).
//!
//!     cargo run --release --example random_checkpoint -- vit-b-16|panderm OUT_DIR [--vision-layers N]
//!
//! `--vision-layers N` keeps only N of the image tower's 12 blocks: a proxy of 1/12 … of a forward
//! for timing kernels on slow software adapters (SwiftShader), every layer being the same shape.

use burn::tensor::Device;
use dermlip::input::tokenizer::wordpiece::TokenizerFile;
use dermlip::{Clip, ModelFileConfig};

const PREPROCESS: &str = r#""preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
  "std": [0.26862954, 0.26130258, 0.27577711], "interpolation": "bicubic", "resize_mode": "shortest"}"#;

const VIT_B_16: &str = r#"{"model_cfg": {"embed_dim": 512,
  "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}}"#;

const PANDERM: &str = r#"{"model_cfg": {"embed_dim": 512,
  "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16, "pretrain_path": null},
  "text_cfg": {"context_length": 256, "hf_model_name": "neuml/pubmedbert-base-embeddings",
               "hf_tokenizer_name": "neuml/pubmedbert-base-embeddings", "hf_pooler_type": "mean_pooler"}}"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (arch, out, layers) = match args.as_slice() {
        [arch, out] if arch == "vit-b-16" || arch == "panderm" => (arch.as_str(), out, None),
        [arch, out, flag, n] if (arch == "vit-b-16" || arch == "panderm") && flag == "--vision-layers" => {
            match n.parse::<usize>() {
                Ok(n @ 1..=12) => (arch.as_str(), out, Some(n)),
                _ => {
                    eprintln!("random_checkpoint: --vision-layers takes 1 to 12, not {n}");
                    std::process::exit(2);
                }
            }
        }
        _ => {
            eprintln!("usage: random_checkpoint vit-b-16|panderm OUT_DIR [--vision-layers N]");
            std::process::exit(2);
        }
    };
    let model_cfg = if arch == "panderm" { PANDERM } else { VIT_B_16 };
    let model_cfg = match layers {
        Some(n) => model_cfg.replacen(r#""layers": 12, "width": 768"#, &format!(r#""layers": {n}, "width": 768"#), 1),
        None => model_cfg.to_string(),
    };
    let json = format!("{model_cfg}, {PREPROCESS}}}");
    let mut cfg = ModelFileConfig::from_json_str(&json).expect("the released config");
    if arch == "panderm" {
        let tokenizer =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/tiny-panderm/tokenizer.json"))
                .expect("the fixture tokenizer");
        cfg = cfg.with_tokenizer(TokenizerFile::from_named_bytes("tokenizer.json", tokenizer).expect("tokenizer"));
    }
    let model = Clip::new(&cfg.model, &Device::flex());
    dermlip::checkpoint::save_open_clip(&model, &cfg, std::path::Path::new(out)).expect("export");
    println!("wrote {out}");
}
