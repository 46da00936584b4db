//! The training loop on the shared `dermlip::Clip` graph: the run's setup (config, devices, data,
//! tokenizer, the model to start from), the epochs of optimisation steps with their metrics,
//! checkpoints and evaluations, and the final export.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use dermlip::checkpoint::{save_open_clip, write_atomic};
use dermlip::config::Activation;
use dermlip::input::preprocess::PreprocessConfig;
use dermlip::input::tokenizer::{text_pad_id, TextIds, TextTokenizer};
use dermlip::weights::StateDict;
use dermlip::{Clip, ClipConfig, ModelFileConfig};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_checkpoint, save_checkpoint, TrainState};
use crate::config::TrainConfig;
use crate::data::{CsvSpec, Dataset};
use crate::evaluate::{evaluate, EvalReport};
use crate::loader::{num_batches, EpochLoader, LoaderConfig, Transform};
use crate::optim::{cosine_lr, AdamW};
use crate::step::{logit_scale_value, materialize, optimisation_step};

pub type Result<T> = std::result::Result<T, String>;

/// One line of `metrics.jsonl` per logged step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub logit_scale: f64,
    pub grad_norm: f64,
    pub batch: usize,
    pub samples_per_s: f64,
    /// Seconds the step waited for its batch (0 when the workers keep ahead of the device).
    pub data_wait_s: f64,
}

pub fn pick_device(name: &str) -> Result<Device> {
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" => Device::wgpu_options().init().map_err(|e| format!("no usable wgpu adapter: {e:?}")),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err("this trainer was built without the `cuda` feature (cargo build --features cuda)".into()),
        other => Err(format!("unknown device \"{other}\" (flex, wgpu, cuda)")),
    }
}

/// The model config (+ preprocessing) the run uses: `model.config`, else the
/// `open_clip_config.json` of the `model.init` checkpoint (its folder, or the folder of its weights
/// file), else the stock ViT-B-16. A BERT text tower (`hf_model_name`) also reads the text model's
/// `config.json` (optional for names dermlip knows) and its tokenizer (`tokenizer.json`, else
/// `vocab.txt`) from the config's folder, as `ModelFileConfig::from_checkpoint_dir` does.
pub fn model_file_config(cfg: &TrainConfig) -> Result<ModelFileConfig> {
    let path = cfg.model.config.clone().or_else(|| {
        cfg.model
            .init
            .as_ref()
            .and_then(|w| if w.is_dir() { Some(w.clone()) } else { w.parent().map(Path::to_path_buf) })
            .map(|d| d.join(dermlip::checkpoint::CONFIG_FILE))
            .filter(|p| p.is_file())
    });
    match path {
        Some(p) => ModelFileConfig::from_config_file(&p).map_err(|e| e.to_string()),
        None => {
            let act = if cfg.model.quick_gelu { Activation::QuickGelu } else { Activation::Gelu };
            Ok(ModelFileConfig { model: ClipConfig::vit_b_16(act), preprocess: PreprocessConfig::default() })
        }
    }
}

/// The model's own tokenizer, as inference builds it ([`TextTokenizer::for_config`]); training
/// needs it loaded (a BERT text tower's tokenizer file is part of its config).
pub fn text_tokenizer(cfg: &ClipConfig) -> Result<TextTokenizer> {
    let tokenizer = TextTokenizer::for_config(cfg).map_err(|e| match e {
        dermlip::Error::Tokenizer(e) => format!("tokenizer: {e}"),
        other => other.detail(),
    })?;
    if !tokenizer.is_loaded() {
        return Err("the BERT text tower has no tokenizer file (tokenizer.json or vocab.txt)".into());
    }
    Ok(tokenizer)
}

pub fn load_dataset(
    csv: &Option<PathBuf>,
    images: &[PathBuf],
    shards: &Option<String>,
    cfg: &TrainConfig,
    labels: bool,
) -> Result<Option<Dataset>> {
    let ds = match (csv, shards) {
        (Some(csv), _) => Dataset::from_csv(&CsvSpec {
            csv: csv.clone(),
            images: if images.is_empty() {
                vec![csv.parent().unwrap_or(Path::new(".")).to_path_buf()]
            } else {
                images.to_vec()
            },
            image_key: cfg.data.image_key.clone(),
            caption_key: cfg.data.caption_key.clone(),
            label_key: if labels { cfg.data.label_key.clone() } else { None },
        }),
        (None, Some(spec)) => Dataset::from_webdataset(spec),
        (None, None) => return Ok(None),
    }
    .map_err(|e| e.to_string())?;
    Ok(Some(ds))
}

/// The devices of a run: `num_devices` of the kind `name` (flex repeats the CPU device, which
/// only makes sense to test the data-parallel code path).
pub fn pick_devices(name: &str, num: usize) -> Result<Vec<Device>> {
    if num <= 1 {
        return Ok(vec![pick_device(name)?]);
    }
    match name {
        "flex" | "cpu" => Ok(vec![Device::flex(); num]),
        "wgpu" => Ok((0..num).map(|i| Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))).collect()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok((0..num).map(Device::cuda).collect()),
        other => pick_device(other).map(|_| Vec::new()),
    }
}

/// Keeps the lines of `metrics.jsonl` up to `step` (a resumed run rewrites what followed).
fn truncate_metrics(path: &Path, step: usize) {
    let Ok(f) = File::open(path) else { return };
    let kept: Vec<String> = BufReader::new(f)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_none_or(|s| s as usize <= step)
        })
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    let _ = write_atomic(path, text.as_bytes());
}

pub struct Outcome {
    pub state: TrainState,
    pub final_dir: PathBuf,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub evals: Vec<(usize, EvalReport)>,
    /// The trained model (on the training device, with autodiff).
    pub model: Clip,
    pub file_config: ModelFileConfig,
}

/// Prints a line of the run's log (to stderr) unless the run is quiet.
fn log(quiet: bool, s: String) {
    if !quiet {
        eprintln!("{s}");
    }
}

/// The output folder with the run's `train_config.toml`.
fn prepare_output(cfg: &TrainConfig, quiet: bool) -> Result<()> {
    fs::create_dir_all(&cfg.output).map_err(|e| format!("{}: {e}", cfg.output.display()))?;
    write_atomic(&cfg.output.join("train_config.toml"), cfg.to_toml().as_bytes()).map_err(|e| e.to_string())?;
    log(quiet, format!("# trainer config\n{}", cfg.to_toml()));
    Ok(())
}

/// The training set and, if configured, the validation set, with what was left out of them.
fn load_datasets(cfg: &TrainConfig, quiet: bool) -> Result<(Arc<Dataset>, Option<Arc<Dataset>>)> {
    let train_ds = load_dataset(&cfg.data.train_csv, &cfg.data.train_images, &cfg.data.train_shards, cfg, false)?
        .ok_or("no training data: set data.train_csv or data.train_shards")?;
    let r = &train_ds.report;
    log(quiet, format!(
        "train: {} samples ({} rows; left out: {} bad rows, {} missing images, {} incomplete samples, {} truncated shards)",
        train_ds.len(), r.rows, r.bad_rows, r.missing_images, r.incomplete_samples, r.truncated_shards
    ));
    for e in &r.examples {
        log(quiet, format!("  {e}"));
    }
    let val_ds = load_dataset(&cfg.data.val_csv, &cfg.data.val_images, &cfg.data.val_shards, cfg, true)?;
    if let Some(v) = &val_ds {
        log(quiet, format!("validation: {} samples ({} problems left out)", v.len(), v.report.problems()));
    }
    Ok((Arc::new(train_ds), val_ds.map(Arc::new)))
}

/// The model to train and where the run stands: a checkpoint to resume, else `model.init`'s
/// weights (a checkpoint folder or a weights file), else open_clip's random initialisation.
fn initial_model(
    cfg: &TrainConfig,
    file_cfg: &ModelFileConfig,
    resume: Option<&Path>,
    optim: &mut AdamW,
    device: &Device,
    quiet: bool,
) -> Result<(Clip, TrainState)> {
    let mcfg = &file_cfg.model;
    match resume {
        Some(dir) => {
            let (m, s) = load_checkpoint(dir, file_cfg, optim, device)?;
            log(
                quiet,
                format!("resumed from {} at step {} (epoch {}, batch {})", dir.display(), s.step, s.epoch, s.batch),
            );
            Ok((m, s))
        }
        None => {
            device.seed(cfg.seed);
            let m = match &cfg.model.init {
                Some(p) => {
                    let (_, weights) = dermlip::checkpoint::locate(p).map_err(|e| e.to_string())?;
                    let sd = StateDict::from_file(&weights).map_err(|e| e.to_string())?;
                    Clip::from_state_dict(mcfg, sd, device).map_err(|e| e.to_string())?
                }
                None => Clip::new(mcfg, device).init_parameters(),
            };
            Ok((m, TrainState::default()))
        }
    }
}

/// `metrics.jsonl`, opened for appending: cut back to `step` on resume, else started afresh.
fn open_metrics(path: &Path, resume: bool, step: usize) -> Result<File> {
    if resume {
        truncate_metrics(path, step);
    } else {
        let _ = fs::remove_file(path);
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())
}

fn write_metric(metrics: &mut File, v: serde_json::Value) {
    let _ = writeln!(metrics, "{v}");
    let _ = metrics.flush();
}

fn progress_bar(quiet: bool, total_steps: usize, step: usize) -> indicatif::ProgressBar {
    let progress = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let pb = indicatif::ProgressBar::new(total_steps as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]").unwrap(),
        );
        pb
    };
    progress.set_position(step as u64);
    progress
}

/// What the loop needs besides the model and its state.
struct Run<'a> {
    cfg: &'a TrainConfig,
    file_cfg: &'a ModelFileConfig,
    quiet: bool,
    progress: indicatif::ProgressBar,
    metrics: File,
    val_ds: Option<Arc<Dataset>>,
    tokenizer: Arc<TextTokenizer>,
    base_device: Device,
    evals: Vec<(usize, EvalReport)>,
}

impl Run<'_> {
    /// Metrics, progress and log line of one optimisation step.
    fn report_step(&mut self, sm: &StepMetrics) {
        let quiet = self.quiet;
        let StepMetrics { step, epoch, loss, lr, logit_scale: scale, grad_norm: gnorm, samples_per_s, .. } = *sm;
        write_metric(&mut self.metrics, serde_json::to_value(sm).unwrap());
        self.progress.set_position(step as u64);
        self.progress.set_message(format!(
            "loss {loss:.4}  lr {lr:.2e}  scale {:.2}  {:.1} samples/s",
            scale.exp(),
            samples_per_s
        ));
        if quiet || self.cfg.log_every > 0 && step % self.cfg.log_every == 0 {
            self.progress.suspend(|| {
                log(quiet, format!(
                    "step {step} epoch {epoch} loss {loss:.5} lr {lr:.3e} logit_scale {scale:.4} grad_norm {gnorm:.3} {samples_per_s:.1} samples/s"
                ))
            });
        }
    }

    /// The end of an epoch: its log line and `epoch_end` event; `state` moves to the next epoch.
    fn end_epoch(&mut self, state: &mut TrainState) {
        log(
            self.quiet,
            format!(
                "epoch {} done: {} samples skipped this epoch ({} in total)",
                state.epoch, state.skipped_this_epoch, state.skipped_total
            ),
        );
        write_metric(
            &mut self.metrics,
            serde_json::json!({
                "event": "epoch_end", "epoch": state.epoch, "at_step": state.step,
                "skipped": state.skipped_this_epoch, "skipped_total": state.skipped_total,
            }),
        );
        state.epoch += 1;
        state.batch = 0;
        state.skipped_this_epoch = 0;
    }

    /// Evaluates on the validation set (if any) and records the report.
    fn evaluate(&mut self, model: &Clip, step: usize) -> Result<()> {
        let Run { cfg, file_cfg, quiet, progress, metrics, val_ds, tokenizer, base_device, evals } = self;
        progress.suspend(|| {
            if let Some(v) = val_ds {
                let report = evaluate(&model.valid(), v, tokenizer, file_cfg, &cfg.data, base_device.clone())?;
                log(*quiet, format!("eval @ step {step}: {}", report.summary()));
                let mut j = serde_json::to_value(&report).unwrap();
                j["event"] = "eval".into();
                j["eval_step"] = step.into();
                write_metric(metrics, j);
                evals.push((step, report));
            }
            Ok(())
        })
    }
}

/// Runs (or resumes) training as configured.
pub fn train(cfg: &TrainConfig, resume: Option<&Path>, quiet: bool) -> Result<Outcome> {
    let file_cfg = model_file_config(cfg)?;
    let mcfg = &file_cfg.model;
    let all_devices = pick_devices(&cfg.device, cfg.num_devices)?;
    let base_device = all_devices[0].clone();
    let device = base_device.clone().autodiff();
    let devices: Vec<Device> = all_devices.iter().map(|d| d.clone().autodiff()).collect();
    prepare_output(cfg, quiet)?;
    let (train_ds, val_ds) = load_datasets(cfg, quiet)?;
    let tokenizer = Arc::new(text_tokenizer(mcfg)?);
    let size = file_cfg.preprocess.size as usize;
    if size != mcfg.vision.image_size {
        return Err(format!("preprocess size {size} differs from the model's image_size {}", mcfg.vision.image_size));
    }
    let pad = text_pad_id(&mcfg.text.arch);
    let loader_cfg = LoaderConfig {
        batch_size: cfg.batch_size,
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        seed: cfg.seed,
        shuffle: true,
        drop_last: true,
        transform: Transform::Train(cfg.augment.clone()),
        preprocess: file_cfg.preprocess.clone(),
    };
    let per_epoch = num_batches(train_ds.len(), cfg.batch_size, true);
    if per_epoch == 0 {
        return Err(format!("{} samples make no full batch of {}", train_ds.len(), cfg.batch_size));
    }
    let total_steps = per_epoch * cfg.epochs;

    let mut optim = AdamW::new(cfg.optim.clone());
    let (mut model, mut state) = initial_model(cfg, &file_cfg, resume, &mut optim, &device, quiet)?;
    // Initialise every lazy parameter now, in module order: a `valid()` copy (accumulation's
    // pass 1) or a replica must see the same values, and the init must not depend on use order.
    materialize(&model);
    if devices.len() > 1 {
        log(quiet, format!("data parallel over {} devices, negatives gathered over the global batch", devices.len()));
    }
    let metrics_path = cfg.output.join("metrics.jsonl");
    let metrics = open_metrics(&metrics_path, resume.is_some(), state.step)?;
    let progress = progress_bar(quiet, total_steps, state.step);
    let mut run = Run {
        cfg,
        file_cfg: &file_cfg,
        quiet,
        progress,
        metrics,
        val_ds,
        tokenizer: Arc::clone(&tokenizer),
        base_device,
        evals: Vec::new(),
    };
    let mut first_loss = None;
    let mut last_loss = None;
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let started = Instant::now();

    'epochs: while state.epoch < cfg.epochs && state.step < max_steps {
        let mut loader = EpochLoader::new(
            Arc::clone(&train_ds),
            Arc::clone(&tokenizer),
            &loader_cfg,
            state.epoch as u64,
            state.batch,
        );
        let mut window = Instant::now();
        loop {
            let waiting = Instant::now();
            let Some(batch) = loader.next() else { break };
            let data_wait = waiting.elapsed().as_secs_f64();
            if !batch.skipped.is_empty() {
                state.skipped_this_epoch += batch.skipped.len();
                state.skipped_total += batch.skipped.len();
                for s in &batch.skipped {
                    run.progress.suspend(|| log(quiet, format!("skipped {s}")));
                }
            }
            state.batch = batch.index + 1;
            if batch.len >= 2 {
                let lr = cosine_lr(cfg.optim.lr, cfg.optim.warmup, total_steps, state.step);
                let tokens = TextIds::trimmed(&batch.tokens, batch.len, pad);
                let (m, loss, gnorm) =
                    optimisation_step(model, &mut optim, &devices, &batch.pixels, &tokens, size, cfg.accum_freq, lr);
                model = m;
                state.step += 1;
                state.samples_seen += batch.len as u64;
                first_loss.get_or_insert(loss);
                last_loss = Some(loss);
                let dt = window.elapsed().as_secs_f64().max(1e-9);
                window = Instant::now();
                run.report_step(&StepMetrics {
                    step: state.step,
                    epoch: state.epoch,
                    loss,
                    lr,
                    logit_scale: logit_scale_value(&model),
                    grad_norm: gnorm,
                    batch: batch.len,
                    samples_per_s: batch.len as f64 / dt,
                    data_wait_s: data_wait,
                });
            }
            let epoch_done = state.batch >= per_epoch;
            if epoch_done {
                run.end_epoch(&mut state);
            }
            let stop = state.step >= max_steps;
            if (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0 && batch.len >= 2)
                || epoch_done
                || stop
            {
                let dir = run.progress.suspend(|| save_checkpoint(cfg, &file_cfg, &model, &optim, &state))?;
                log(quiet, format!("checkpoint {}", dir.display()));
            }
            if (cfg.eval_every > 0 && state.step % cfg.eval_every == 0 && batch.len >= 2) || epoch_done {
                run.evaluate(&model, state.step)?;
            }
            if stop {
                break 'epochs;
            }
            if epoch_done {
                continue 'epochs;
            }
        }
    }
    run.progress.finish_and_clear();
    log(quiet, format!("trained {} steps in {:.1} s", state.step, started.elapsed().as_secs_f64()));
    let final_dir = export(cfg, &file_cfg, &model, quiet)?;
    if let Err(e) = crate::plot::write_plots(&metrics_path, &cfg.output) {
        log(quiet, format!("plots: {e}"));
    }
    let evals = run.evals;
    Ok(Outcome { state, final_dir, first_loss, last_loss, evals, model, file_config: file_cfg })
}

/// The trained model as an open_clip checkpoint in `output/final` and, if configured, as a web
/// bundle in `output/web-bundle`.
fn export(cfg: &TrainConfig, file_cfg: &ModelFileConfig, model: &Clip, quiet: bool) -> Result<PathBuf> {
    let final_dir = cfg.output.join("final");
    save_open_clip(model, file_cfg, &final_dir).map_err(|e| e.to_string())?;
    log(quiet, format!("exported open_clip model to {}", final_dir.display()));
    if cfg.export_web_bundle {
        let bundle_dir = cfg.output.join("web-bundle");
        let opts = dermlip::bundle::ConvertOptions::default();
        let manifest =
            dermlip::bundle::write_bundle(&final_dir, &bundle_dir, &opts).map_err(|e| format!("web bundle: {e}"))?;
        log(quiet, format!("web bundle ({} bytes) in {}", manifest.total_bytes(), bundle_dir.display()));
    }
    Ok(final_dir)
}
