//! Image-embedding speed of the full-size ViT-B/16 (random weights), printed as a table.
//! `--pytorch FILE` adds the JSON written by `benches/bench_open_clip.py --json` and the ratio.

use std::time::Instant;

use burn::tensor::Device;
use clap::Parser;
use dermlip::config::{Activation, ClipConfig, ModelFileConfig};
use dermlip::input::preprocess::PreprocessConfig;
use dermlip::{Clip, DermLip};

#[derive(Parser)]
#[command(about = "Times DermLIP ViT-B/16 image embedding (random weights) on a Burn device")]
struct Args {
    /// Timed runs per batch size (the median is reported).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed warm-up runs per batch size.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// `cpu` (flex) or `wgpu`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Whose kernels run on wgpu: `dermlip` (all of src/model/kernels/: fused linear layers,
    /// attention and LayerNorm), `burn` (Burn's defaults), `linear`, `attention` or `layer-norm`
    /// (only that one of dermlip's), `both` (burn, then dermlip, in the same process:
    /// before/after) or `each`.
    #[arg(long, default_value = "dermlip")]
    kernels: String,
    /// JSON from `benches/bench_open_clip.py --json` to compare against.
    #[arg(long)]
    pytorch: Option<std::path::PathBuf>,
}

fn main() {
    let args = Args::parse();
    let device = match args.device.as_str() {
        "cpu" => Device::flex(),
        "wgpu" => Device::wgpu_options().init().unwrap_or_else(|e| {
            eprintln!("bench: no wgpu adapter: {e:?}");
            std::process::exit(1)
        }),
        other => {
            eprintln!("bench: unknown device {other} (cpu or wgpu)");
            std::process::exit(2)
        }
    };
    let pytorch: Option<serde_json::Value> = args.pytorch.as_ref().map(|p| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("bench: {}: {e}", p.display());
            std::process::exit(1)
        });
        serde_json::from_str(&text).unwrap_or_else(|e| {
            eprintln!("bench: {}: not JSON: {e}", p.display());
            std::process::exit(1)
        })
    });
    let cfg = ClipConfig::vit_b_16(Activation::Gelu);
    let model = Clip::new(&cfg, &device);
    let file_config = ModelFileConfig { model: cfg.clone(), preprocess: PreprocessConfig::default() };
    let model = DermLip::from_model(file_config, model, device).expect("ViT-B/16 config is valid");
    use dermlip::model::kernels::Kernels;
    let names: Vec<&str> = match args.kernels.as_str() {
        "both" => vec!["burn", "dermlip"],
        "each" => Kernels::NAMES.iter().map(|(n, _)| *n).collect(),
        name => vec![name],
    };
    let mut kernels = Vec::new();
    for name in names {
        match Kernels::by_name(name) {
            Some(k) => kernels.push((name, k)),
            None => {
                eprintln!(
                    "bench: unknown --kernels {name} (dermlip, burn, linear, attention, layer-norm, both or each)"
                );
                std::process::exit(2)
            }
        }
    }
    println!("| device | kernels | batch | dermlip median ms | ms / image | open_clip PyTorch median ms | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for ((kernels_name, k), &batch) in kernels.iter().flat_map(|&k| args.batch.iter().map(move |b| (k, b))) {
        dermlip::model::kernels::set_kernels(k);
        let input = random_images(batch, cfg.vision.image_size);
        // The path `dermlip embed-image` takes: normalised pixels in, embeddings read back.
        let run = || {
            let _ = dermlip::pipeline::rows(model.encode_pixels(&input)).expect("readback");
        };
        for _ in 0..args.warmup {
            run();
        }
        let mut times: Vec<f64> = (0..args.runs.max(1))
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let torch = pytorch.as_ref().and_then(|v| {
            v["results"].as_array()?.iter().find(|r| r["batch"].as_u64() == Some(batch as u64))?["median_ms"].as_f64()
        });
        let (torch_s, ratio_s) = match torch {
            Some(t) => (format!("{t:.1}"), format!("{:.2}×", median / t)),
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {kernels_name} | {batch} | {median:.1} | {:.1} | {torch_s} | {ratio_s} |",
            args.device,
            median / batch as f64
        );
    }
}

/// Normalised pixel buffers (`3×size×size`, values in [-2, 2)) from a fixed xorshift stream.
fn random_images(batch: usize, size: usize) -> Vec<Vec<f32>> {
    let mut state = 0x2545F4914F6CDD1Du64;
    (0..batch)
        .map(|_| {
            (0..3 * size * size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
                })
                .collect()
        })
        .collect()
}
