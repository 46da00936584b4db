//! `trainer`: contrastive pretraining of DermLIP (see trainer/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dermlip_trainer::checkpoint::latest_checkpoint;
use dermlip_trainer::config::TrainConfig;
use dermlip_trainer::synth::{generate, tiny_config_json, SynthConfig};
use dermlip_trainer::train::{train_with, RunOptions};

#[derive(Parser, Debug)]
#[command(
    name = "trainer",
    about = "Contrastive pretraining of DermLIP on Derm1M (open_clip recipe) on Burn",
    after_help = "Every flag overrides the same setting of --config (trainer --print-default-config lists them \
                  all). See trainer/README.md for the open_clip flag each one mirrors."
)]
struct Args {
    /// TOML config file; the flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Resume from a checkpoint folder, or `latest` (newest under OUTPUT/checkpoints). Refused when
    /// the config changed in a field that shifts the schedule, data position or model.
    #[arg(long, value_name = "DIR|latest")]
    resume: Option<String>,
    /// With --resume: resume even when the checkpoint's config differs (batch size, accum-freq,
    /// lr schedule, seed, epochs, data paths, model, …); the differences are logged.
    #[arg(long)]
    allow_config_change: bool,
    /// Write the synthetic mini-Derm1M into this folder (plus a tiny model config) and exit.
    #[arg(long, value_name = "DIR")]
    generate_synthetic: Option<PathBuf>,
    /// With --generate-synthetic: number of training pairs.
    #[arg(long, default_value_t = 384, value_name = "N")]
    synthetic_train: usize,
    /// With --generate-synthetic: number of validation pairs.
    #[arg(long, default_value_t = 64, value_name = "N")]
    synthetic_val: usize,
    /// Print the default (Derm1M ViT-B/16) config as TOML and exit.
    #[arg(long)]
    print_default_config: bool,
    /// One log line per step instead of the progress bar, and no config dump.
    #[arg(long)]
    quiet: bool,
    /// Training-throughput benchmark on random inputs (model from the config, batch from
    /// --batch-size, default 8), printed as one JSON line; see benches/throughput.sh.
    #[arg(long)]
    bench: bool,
    /// With --bench: timed steps.
    #[arg(long, default_value_t = 5, value_name = "N")]
    bench_steps: usize,
    /// With --bench: untimed warm-up steps.
    #[arg(long, default_value_t = 2, value_name = "N")]
    bench_warmup: usize,

    /// Output folder: checkpoints, metrics.jsonl, tensorboard/, plots, final/ and web-bundle/.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// flex (CPU), wgpu, cuda (built with --features cuda).
    #[arg(long)]
    device: Option<String>,
    /// Data parallelism over this many devices: a replica with its own AdamW on each, negatives
    /// gathered over the global batch, one gradient sum per step (NCCL all-reduce on cuda, through
    /// device 0 on wgpu and flex).
    #[arg(long, value_name = "N")]
    num_devices: Option<usize>,
    /// Seed of the data order, augmentation, initialisation and dropout masks (open_clip --seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Epochs; the cosine schedule spans all of them (open_clip --epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Global batch per optimiser step, the contrastive negatives. Default: the model's Derm1M
    /// recipe, 4096 for ViT-B/16, 2048 for PanDerm.
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// Micro-batches per step with cached features (open_clip --accum-freq): memory of
    /// batch/accum-freq, negatives of the whole batch.
    #[arg(long, value_name = "K")]
    accum_freq: Option<usize>,
    /// Stop after this many optimiser steps (the schedule still spans all epochs).
    #[arg(long, value_name = "N")]
    max_steps: Option<usize>,
    /// Mixed precision (open_clip --precision): auto (default: amp on a GPU whose device has the
    /// half type, bf16 on CUDA and f16 on wgpu; f32 on the CPU), amp (bf16 on CUDA, f16 with
    /// dynamic loss scaling on wgpu), amp_bf16, amp_f16, f32. Weights, AdamW moments and the loss
    /// stay f32.
    #[arg(long, value_name = "P")]
    precision: Option<String>,
    /// Activation checkpointing (open_clip --grad-checkpointing): recompute activations in the
    /// backward pass (Burn's balanced strategy), less memory per sample for more compute.
    #[arg(long)]
    grad_checkpointing: bool,
    /// Peak learning rate (open_clip --lr).
    #[arg(long)]
    lr: Option<f64>,
    /// Linear warmup steps (open_clip --warmup).
    #[arg(long, value_name = "STEPS")]
    warmup: Option<usize>,
    /// AdamW weight decay (open_clip --wd).
    #[arg(long)]
    wd: Option<f64>,
    /// Global gradient-norm clip (open_clip --grad-clip-norm); off by default.
    #[arg(long, value_name = "NORM")]
    grad_clip_norm: Option<f64>,
    /// Stop when this many steps in a row had a non-finite loss or gradient norm (their updates
    /// are skipped and counted); 0 = never stop. Default 10.
    #[arg(long, value_name = "N")]
    max_nonfinite_steps: Option<usize>,
    /// Training CSV (open_clip --train-data with --dataset-type csv).
    #[arg(long, value_name = "CSV")]
    train_csv: Option<PathBuf>,
    /// Image folders and/or zip archives of the training CSV, comma separated.
    #[arg(long, value_delimiter = ',', value_name = "DIR|ZIP,...")]
    train_images: Option<Vec<PathBuf>>,
    /// WebDataset shards instead of a CSV: `dir/shard-{00000..00099}.tar`, `::`-separated.
    #[arg(long, value_name = "SPEC")]
    train_shards: Option<String>,
    /// Validation CSV (open_clip --val-data).
    #[arg(long, value_name = "CSV")]
    val_csv: Option<PathBuf>,
    /// Image folders and/or zip archives of the validation CSV, comma separated.
    #[arg(long, value_delimiter = ',', value_name = "DIR|ZIP,...")]
    val_images: Option<Vec<PathBuf>>,
    /// Validation WebDataset shards.
    #[arg(long, value_name = "SPEC")]
    val_shards: Option<String>,
    /// CSV caption column (open_clip --csv-caption-key); default truncated_caption.
    #[arg(long, value_name = "COLUMN")]
    caption_key: Option<String>,
    /// CSV image column (open_clip --csv-img-key); default filename.
    #[arg(long, value_name = "COLUMN")]
    image_key: Option<String>,
    /// Validation column with the class label, for zero-shot accuracy (e.g. disease_label).
    #[arg(long, value_name = "COLUMN")]
    label_key: Option<String>,
    /// Decode/augment worker threads (open_clip --workers); default: the CPU count.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Batches decoded ahead of the training step; default 2.
    #[arg(long, value_name = "N")]
    prefetch: Option<usize>,
    /// Open shard files / zip archives each worker keeps (least recently used closed first);
    /// default 8.
    #[arg(long, value_name = "N")]
    max_open_files: Option<usize>,
    /// Stop when more than this fraction of the samples read were skipped (I/O errors, refused or
    /// undecodable samples); default 0.01 (1 %), 1 = never.
    #[arg(long, value_name = "FRACTION")]
    max_skip_rate: Option<f64>,
    /// Samples read before --max-skip-rate is checked; default 1000.
    #[arg(long, value_name = "N")]
    skip_rate_min_samples: Option<u64>,
    /// open_clip_config.json of the model to train.
    #[arg(long, value_name = "JSON")]
    model_config: Option<PathBuf>,
    /// open_clip weights to start from: a weights file or a checkpoint folder (its
    /// open_clip_config.json, and for a BERT text tower config.json + tokenizer.json, are used
    /// when --model-config is not given); else random init as open_clip.
    #[arg(long, value_name = "FILE|DIR")]
    init: Option<PathBuf>,
    /// Patch dropout of the ViT tower in training (open_clip vision_cfg.patch_dropout, --force-patch-dropout);
    /// default: the model config's.
    #[arg(long, value_name = "P")]
    patch_dropout: Option<f64>,
    /// BERT hidden_dropout_prob in training; default: the text model's config.json (0.1 for PubMedBERT).
    #[arg(long, value_name = "P")]
    hidden_dropout: Option<f64>,
    /// BERT attention_probs_dropout_prob in training; default: the text model's config.json.
    #[arg(long, value_name = "P")]
    attention_dropout: Option<f64>,
    /// Checkpoint every N steps (0 = only at epoch ends, as open_clip --save-frequency 1).
    #[arg(long, value_name = "N")]
    checkpoint_every: Option<usize>,
    /// Checkpoints kept (the newest); 0 = all.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Evaluate every N steps (0 = only at epoch ends, as open_clip --zeroshot-frequency 1).
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Read the metrics back and log them every N steps (a console line, metrics.jsonl,
    /// TensorBoard); the steps between never wait for the device. Default 10; 0 or 1 = every step.
    #[arg(long, value_name = "N")]
    log_every: Option<usize>,
    /// Do not write TensorBoard event files (OUTPUT/tensorboard/); metrics.jsonl is always written.
    #[arg(long)]
    no_tensorboard: bool,
}

fn run(args: Args) -> Result<(), String> {
    if let Some(dir) = &args.generate_synthetic {
        let cfg = SynthConfig { n_train: args.synthetic_train, n_val: args.synthetic_val, ..SynthConfig::default() };
        let report = generate(dir, &cfg).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tiny = dir.join("tiny_clip_config.json");
        std::fs::write(&tiny, serde_json::to_string_pretty(&tiny_config_json(cfg.image_size)).unwrap())
            .map_err(|e| e.to_string())?;
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        return Ok(());
    }
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            TrainConfig::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => TrainConfig::default(),
    };
    if args.print_default_config {
        print!("{}", TrainConfig::default().to_toml());
        return Ok(());
    }
    macro_rules! set {
        ($($field:ident => $target:expr),* $(,)?) => { $( if let Some(v) = args.$field.clone() { $target = v; } )* };
    }
    set!(output => cfg.output, device => cfg.device, num_devices => cfg.num_devices, seed => cfg.seed,
        epochs => cfg.epochs,
        accum_freq => cfg.accum_freq, lr => cfg.optim.lr, warmup => cfg.optim.warmup,
        wd => cfg.optim.weight_decay, caption_key => cfg.data.caption_key, image_key => cfg.data.image_key,
        workers => cfg.data.workers, train_images => cfg.data.train_images, val_images => cfg.data.val_images,
        checkpoint_every => cfg.checkpoint_every, keep_last => cfg.keep_last, eval_every => cfg.eval_every,
        log_every => cfg.log_every, prefetch => cfg.data.prefetch, max_open_files => cfg.data.max_open_files,
        max_skip_rate => cfg.data.max_skip_rate, skip_rate_min_samples => cfg.data.skip_rate_min_samples,
        max_nonfinite_steps => cfg.max_nonfinite_steps, precision => cfg.precision);
    if args.grad_checkpointing {
        cfg.grad_checkpointing = true;
    }
    macro_rules! set_opt {
        ($($field:ident => $target:expr),* $(,)?) => { $( if let Some(v) = args.$field.clone() { $target = Some(v); } )* };
    }
    set_opt!(max_steps => cfg.max_steps, grad_clip_norm => cfg.optim.grad_clip_norm, train_csv => cfg.data.train_csv,
        train_shards => cfg.data.train_shards, val_csv => cfg.data.val_csv, val_shards => cfg.data.val_shards,
        label_key => cfg.data.label_key, model_config => cfg.model.config, init => cfg.model.init,
        batch_size => cfg.batch_size, patch_dropout => cfg.model.patch_dropout,
        hidden_dropout => cfg.model.hidden_dropout, attention_dropout => cfg.model.attention_dropout);
    if args.no_tensorboard {
        cfg.tensorboard = false;
    }
    if args.bench {
        let file_cfg = dermlip_trainer::train::model_file_config(&cfg)?;
        let batch = args.batch_size.unwrap_or(8);
        let opts = dermlip_trainer::bench::BenchOptions {
            device: cfg.device.clone(),
            num_devices: cfg.num_devices,
            precision: cfg.precision.clone(),
            grad_checkpointing: cfg.grad_checkpointing,
            batch,
            accum_freq: cfg.accum_freq,
            warmup: args.bench_warmup,
            steps: args.bench_steps,
        };
        let r = dermlip_trainer::bench::run(&file_cfg, &opts)?;
        println!("{}", serde_json::to_string(&r).unwrap());
        return Ok(());
    }
    let resume = match args.resume.as_deref() {
        None => None,
        Some("latest") => Some(
            latest_checkpoint(&cfg.output)
                .ok_or_else(|| format!("--resume latest: no checkpoint under {}/checkpoints", cfg.output.display()))?,
        ),
        Some(p) => Some(PathBuf::from(p)),
    };
    let opts = RunOptions { quiet: args.quiet, allow_config_change: args.allow_config_change };
    let out = train_with(&cfg, resume.as_deref(), &opts)?;
    if let (Some(a), Some(b)) = (out.first_loss, out.last_loss) {
        println!("loss {a:.4} -> {b:.4} over {} steps", out.state.step);
    }
    if let Some((step, r)) = out.evals.last() {
        println!("eval @ step {step}: {}", r.summary());
    }
    println!(
        "skipped samples: {} ({} I/O errors); non-finite steps skipped: {}",
        out.state.skipped_total, out.state.io_errors_total, out.state.nonfinite_total
    );
    println!("model: {}", out.final_dir.display());
    Ok(())
}

/// glibc serves allocations above 32 MiB with fresh `mmap`s and unmaps them when freed, so every
/// step's large activations and gradients fault in zeroed pages again: a fifth of a ViT-B/16 CPU
/// step went to the kernel clearing pages (`perf`). The trainer keeps freed memory in the heap for
/// the next step instead (measured: 20.8 → 17.4 s per batch-16 step on 2 cores, the same peak
/// memory). A `GLIBC_TUNABLES` that sets malloc parameters takes precedence.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("malloc")) {
        return;
    }
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
