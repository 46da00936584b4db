//! `trainer`: contrastive pretraining of DermLIP (see trainer/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dermlip_trainer::checkpoint::latest_checkpoint;
use dermlip_trainer::config::TrainConfig;
use dermlip_trainer::synth::{generate, tiny_config_json, SynthConfig};
use dermlip_trainer::train::train;

#[derive(Parser, Debug)]
#[command(name = "trainer", about = "Contrastive pretraining of DermLIP on Derm1M (open_clip recipe) on Burn")]
struct Args {
    /// TOML config file; the flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Resume from a checkpoint folder, or `latest` (newest under OUTPUT/checkpoints).
    #[arg(long)]
    resume: Option<String>,
    /// Write the synthetic mini-Derm1M into this folder (plus a tiny model config) and exit.
    #[arg(long, value_name = "DIR")]
    generate_synthetic: Option<PathBuf>,
    #[arg(long, default_value_t = 384)]
    synthetic_train: usize,
    #[arg(long, default_value_t = 64)]
    synthetic_val: usize,
    /// Print the default (Derm1M ViT-B/16) config as TOML and exit.
    #[arg(long)]
    print_default_config: bool,
    #[arg(long)]
    quiet: bool,
    /// Training-throughput benchmark on random inputs (model from the config, batch from
    /// --batch-size), printed as one JSON line; see benches/throughput.sh.
    #[arg(long)]
    bench: bool,
    #[arg(long, default_value_t = 5)]
    bench_steps: usize,
    #[arg(long, default_value_t = 2)]
    bench_warmup: usize,

    #[arg(long)]
    output: Option<PathBuf>,
    /// flex (CPU), wgpu, cuda.
    #[arg(long)]
    device: Option<String>,
    /// Data parallelism over this many devices (negatives gathered over the global batch).
    #[arg(long)]
    num_devices: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    accum_freq: Option<usize>,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    warmup: Option<usize>,
    #[arg(long)]
    wd: Option<f64>,
    #[arg(long)]
    grad_clip_norm: Option<f64>,
    #[arg(long)]
    train_csv: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    train_images: Option<Vec<PathBuf>>,
    #[arg(long)]
    train_shards: Option<String>,
    #[arg(long)]
    val_csv: Option<PathBuf>,
    #[arg(long, value_delimiter = ',')]
    val_images: Option<Vec<PathBuf>>,
    #[arg(long)]
    val_shards: Option<String>,
    #[arg(long)]
    caption_key: Option<String>,
    #[arg(long)]
    image_key: Option<String>,
    #[arg(long)]
    label_key: Option<String>,
    #[arg(long)]
    workers: Option<usize>,
    /// open_clip_config.json of the model to train.
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// open_clip weights to start from: a weights file or a checkpoint folder (its
    /// open_clip_config.json, and for a BERT text tower config.json + tokenizer.json, are used
    /// when --model-config is not given); else random init as open_clip.
    #[arg(long)]
    init: Option<PathBuf>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    keep_last: Option<usize>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    log_every: Option<usize>,
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
        batch_size => cfg.batch_size, accum_freq => cfg.accum_freq, lr => cfg.optim.lr, warmup => cfg.optim.warmup,
        wd => cfg.optim.weight_decay, caption_key => cfg.data.caption_key, image_key => cfg.data.image_key,
        workers => cfg.data.workers, train_images => cfg.data.train_images, val_images => cfg.data.val_images,
        checkpoint_every => cfg.checkpoint_every, keep_last => cfg.keep_last, eval_every => cfg.eval_every,
        log_every => cfg.log_every);
    macro_rules! set_opt {
        ($($field:ident => $target:expr),* $(,)?) => { $( if let Some(v) = args.$field.clone() { $target = Some(v); } )* };
    }
    set_opt!(max_steps => cfg.max_steps, grad_clip_norm => cfg.optim.grad_clip_norm, train_csv => cfg.data.train_csv,
        train_shards => cfg.data.train_shards, val_csv => cfg.data.val_csv, val_shards => cfg.data.val_shards,
        label_key => cfg.data.label_key, model_config => cfg.model.config, init => cfg.model.init);
    if args.bench {
        let file_cfg = dermlip_trainer::train::model_file_config(&cfg)?;
        let batch = args.batch_size.unwrap_or(8);
        let r = dermlip_trainer::bench::run(&file_cfg, &cfg.device, batch, args.bench_warmup, args.bench_steps)?;
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
    let out = train(&cfg, resume.as_deref(), args.quiet)?;
    if let (Some(a), Some(b)) = (out.first_loss, out.last_loss) {
        println!("loss {a:.4} -> {b:.4} over {} steps", out.state.step);
    }
    if let Some((step, r)) = out.evals.last() {
        println!("eval @ step {step}: {}", r.summary());
    }
    println!("skipped samples: {}", out.state.skipped_total);
    println!("model: {}", out.final_dir.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trainer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
