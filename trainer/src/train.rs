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

use crate::checkpoint::{check_resume_config, load_checkpoint, remove_stale_temp_dirs, save_checkpoint, TrainState};
use crate::config::TrainConfig;
use crate::data::{CsvSpec, Dataset};
use crate::evaluate::{evaluate, EvalReport};
use crate::loader::{num_batches, EpochLoader, LoaderConfig, ReaderPool, Transform};
use crate::optim::{cosine_lr, AdamW};
use crate::step::{materialize, Precision, StepReport, Stepper};
use crate::tensorboard::EventWriter;

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

/// The device `name`. Burn's wgpu runtime can be initialised once per process, so the first
/// caller initialises it and later ones (a second run in the same process, tests) reuse it.
pub fn pick_device(name: &str) -> Result<Device> {
    static WGPU: std::sync::OnceLock<Result<Device>> = std::sync::OnceLock::new();
    match name {
        "flex" | "cpu" => Ok(Device::flex()),
        "wgpu" => WGPU
            .get_or_init(|| Device::wgpu_options().init().map_err(|e| format!("no usable wgpu adapter: {e:?}")))
            .clone(),
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

/// What a run trains on, for its log and `--bench`: for wgpu the adapter wgpu picked (one without
/// a card, such as lavapipe, is named as the CPU emulation it is); for flex, the CPU.
pub fn describe_device(name: &str, device: &Device) -> String {
    match name {
        "flex" | "cpu" => "flex (the CPU)".into(),
        "wgpu" => {
            let who = device.identity();
            let adapter = who.as_ref().map_or_else(|| "an unnamed adapter".to_string(), |i| i.name.clone());
            let soft = if who.is_some_and(|i| i.physical.is_none()) {
                " (no GPU: a software adapter emulated on the CPU)"
            } else {
                ""
            };
            format!("wgpu on {adapter}{soft}")
        }
        other => match device.identity() {
            Some(i) => format!("{other} on {}", i.name),
            None => other.to_string(),
        },
    }
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

/// The training (autodiff) devices, with Burn's gradient checkpointing when asked
/// (`--grad-checkpointing`).
pub fn autodiff_devices(devices: &[Device], grad_checkpointing: bool) -> Vec<Device> {
    devices
        .iter()
        .map(|d| if grad_checkpointing { d.clone().autodiff().gradient_checkpointing() } else { d.clone().autodiff() })
        .collect()
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

/// How a run is started, beyond its config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// One log line per step instead of the progress bar; no config dump.
    pub quiet: bool,
    /// Resume even when the checkpoint's config differs in a field that shifts the schedule, the
    /// data position or the model (`--allow-config-change`); the differences are logged.
    pub allow_config_change: bool,
}

/// The training-time dropout rates of the run: the config's overrides, else the model files'
/// (`vision_cfg.patch_dropout` of `open_clip_config.json`; a BERT's `hidden_dropout_prob` /
/// `attention_probs_dropout_prob` from its `config.json`, Hugging Face's 0.1 when absent).
pub fn dropout_rates(cfg: &TrainConfig, file_cfg: &ModelFileConfig) -> Result<dermlip::model::Dropouts> {
    let config_path = cfg.model.config.clone().or_else(|| {
        cfg.model
            .init
            .as_ref()
            .and_then(|w| if w.is_dir() { Some(w.clone()) } else { w.parent().map(Path::to_path_buf) })
            .map(|d| d.join(dermlip::checkpoint::CONFIG_FILE))
            .filter(|p| p.is_file())
    });
    let read = |p: &Path| -> Option<serde_json::Value> { serde_json::from_str(&fs::read_to_string(p).ok()?).ok() };
    let open_clip = config_path.as_deref().and_then(read);
    let model_cfg = open_clip.as_ref().map(|v| v.get("model_cfg").unwrap_or(v));
    let patch = model_cfg
        .and_then(|m| m.get("vision_cfg"))
        .and_then(|v| v.get("patch_dropout"))
        .and_then(|p| p.as_f64())
        .unwrap_or(0.0);
    let bert = matches!(file_cfg.model.text.arch, dermlip::config::TextArch::Bert(_));
    let hf = if bert {
        config_path.as_deref().and_then(Path::parent).map(|d| d.join("config.json")).as_deref().and_then(read)
    } else {
        None
    };
    let hf_rate =
        |k: &str| if bert { hf.as_ref().and_then(|v| v.get(k)).and_then(|p| p.as_f64()).unwrap_or(0.1) } else { 0.0 };
    let d = dermlip::model::Dropouts {
        patch: cfg.model.patch_dropout.unwrap_or(patch),
        hidden: cfg.model.hidden_dropout.unwrap_or_else(|| hf_rate("hidden_dropout_prob")),
        attention: cfg.model.attention_dropout.unwrap_or_else(|| hf_rate("attention_probs_dropout_prob")),
    };
    for (name, p) in [("patch_dropout", d.patch), ("hidden_dropout", d.hidden), ("attention_dropout", d.attention)] {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("model.{name} = {p}: must be in [0, 1)"));
        }
    }
    Ok(d)
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
    tensorboard: Option<EventWriter>,
    /// The validation loader's readers, kept between evaluations.
    val_readers: ReaderPool,
}

impl Run<'_> {
    /// Metrics, progress and log line of one optimisation step.
    fn report_step(&mut self, sm: &StepMetrics) {
        let StepMetrics { step, epoch, loss, lr, logit_scale: scale, grad_norm: gnorm, samples_per_s, .. } = *sm;
        write_metric(&mut self.metrics, serde_json::to_value(sm).unwrap());
        self.scalars(
            step,
            &[
                ("train/loss", loss),
                ("train/lr", lr),
                ("train/logit_scale", scale),
                ("train/temperature", (-scale).exp()),
                ("train/grad_norm", gnorm),
                ("train/samples_per_s", samples_per_s),
                ("train/data_wait_s", sm.data_wait_s),
            ],
        );
        self.progress.set_position(step as u64);
        self.progress.set_message(format!(
            "loss {loss:.4}  lr {lr:.2e}  scale {:.2}  {:.1} samples/s",
            scale.exp(),
            samples_per_s
        ));
        // A line per readback (every `log_every` steps), in both modes.
        self.progress.suspend(|| {
            eprintln!(
                "step {step} epoch {epoch} loss {loss:.5} lr {lr:.3e} logit_scale {scale:.4} grad_norm {gnorm:.3} {samples_per_s:.1} samples/s"
            )
        });
    }

    /// Scalars to TensorBoard (if on); a write error turns it off with a message.
    fn scalars(&mut self, step: usize, values: &[(&str, f64)]) {
        if let Some(tb) = &mut self.tensorboard {
            if let Err(e) = tb.scalars(step, values) {
                log(self.quiet, format!("tensorboard: {}: {e} (no more events written)", tb.path().display()));
                self.tensorboard = None;
            }
        }
    }

    /// The end of an epoch: its log line and `epoch_end` event; `state` moves to the next epoch.
    fn end_epoch(&mut self, state: &mut TrainState) {
        log(
            self.quiet,
            format!(
                "epoch {} done: {} samples skipped this epoch, {} of them I/O errors ({} skipped, {} I/O errors in \
                 total); {} non-finite steps skipped in total",
                state.epoch,
                state.skipped_this_epoch,
                state.io_errors_this_epoch,
                state.skipped_total,
                state.io_errors_total,
                state.nonfinite_total
            ),
        );
        write_metric(
            &mut self.metrics,
            serde_json::json!({
                "event": "epoch_end", "epoch": state.epoch, "at_step": state.step,
                "skipped": state.skipped_this_epoch, "skipped_total": state.skipped_total,
                "io_errors": state.io_errors_this_epoch, "io_errors_total": state.io_errors_total,
                "nonfinite_total": state.nonfinite_total,
            }),
        );
        self.scalars(
            state.step,
            &[
                ("data/skipped_per_epoch", state.skipped_this_epoch as f64),
                ("data/io_errors_per_epoch", state.io_errors_this_epoch as f64),
                ("train/nonfinite_steps_total", state.nonfinite_total as f64),
            ],
        );
        state.epoch += 1;
        state.batch = 0;
        state.skipped_this_epoch = 0;
        state.io_errors_this_epoch = 0;
    }

    /// Takes a readback into the run's state: the non-finite steps since the last one (counted,
    /// logged as `{"event":"nonfinite_step",…}`, an error once `max_nonfinite_steps` come in a row)
    /// and the loss scaler. `counted` holds the device's counters already accounted.
    fn account(&mut self, state: &mut TrainState, r: &StepReport, counted: &mut (u64, u64)) -> Result<()> {
        let new = r.nonfinite_total.saturating_sub(counted.0);
        let new_skips = r.scaler_skips.saturating_sub(counted.1);
        *counted = (r.nonfinite_total, r.scaler_skips);
        state.scaler_skips_total += new_skips;
        if r.loss_scale != 1.0 || state.loss_scale.is_some() {
            state.loss_scale = Some(r.loss_scale);
            state.scaler_good_steps = r.scaler_good_steps;
        }
        if new_skips > 0 {
            let values =
                [("train/loss_scale", r.loss_scale), ("train/scaler_skips_total", state.scaler_skips_total as f64)];
            self.scalars(state.step, &values);
        }
        state.nonfinite_total += new as usize;
        state.nonfinite_in_a_row = r.nonfinite_in_a_row as usize;
        if new == 0 {
            return Ok(());
        }
        let (step, in_a_row, total) = (state.step, state.nonfinite_in_a_row, state.nonfinite_total);
        let (loss, grad_norm) = (r.loss, r.grad_norm);
        let quiet = self.quiet;
        let since = if new == 1 { String::new() } else { format!("{new} steps up to ") };
        self.progress.suspend(|| {
            log(quiet, format!(
                "{since}step {step}: non-finite loss {loss} / gradient norm {grad_norm}: update skipped ({in_a_row} in a row, {total} in total)"
            ))
        });
        write_metric(
            &mut self.metrics,
            serde_json::json!({
                "event": "nonfinite_step", "step": step, "epoch": state.epoch,
                "loss": loss.to_string(), "grad_norm": grad_norm.to_string(),
                "in_a_row": in_a_row, "total": total, "new": new,
            }),
        );
        self.scalars(step, &[("train/nonfinite_steps_total", total as f64)]);
        let max = self.cfg.max_nonfinite_steps;
        if max > 0 && in_a_row >= max {
            return Err(format!(
                "stopping: {in_a_row} optimisation steps in a row had a non-finite loss or gradient norm (the last at \
                 step {step}: loss {loss}, gradient norm {grad_norm}; {total} skipped in total). The weights are those \
                 of the last finite step; lower the learning rate, enable --grad-clip-norm, check the data, or raise \
                 --max-nonfinite-steps (0 = never stop)"
            ));
        }
        Ok(())
    }

    /// Evaluates on the validation set (if any) and records the report.
    fn evaluate(&mut self, model: &Clip, step: usize) -> Result<()> {
        let Run {
            cfg,
            file_cfg,
            quiet,
            progress,
            metrics,
            val_ds,
            tokenizer,
            base_device,
            evals,
            tensorboard,
            val_readers,
        } = self;
        progress.suspend(|| {
            if let Some(v) = val_ds {
                let report =
                    evaluate(&model.valid(), v, tokenizer, file_cfg, &cfg.data, base_device.clone(), val_readers)?;
                log(*quiet, format!("eval @ step {step}: {}", report.summary()));
                let mut j = serde_json::to_value(&report).unwrap();
                if let (Some(tb), Some(fields)) = (tensorboard.as_mut(), j.as_object()) {
                    let tags: Vec<(String, f64)> =
                        fields.iter().filter_map(|(k, v)| v.as_f64().map(|x| (format!("eval/{k}"), x))).collect();
                    let values: Vec<(&str, f64)> = tags.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    let _ = tb.scalars(step, &values);
                }
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
    train_with(cfg, resume, &RunOptions { quiet, ..RunOptions::default() })
}

/// As [`train`], with the [`RunOptions`].
pub fn train_with(cfg: &TrainConfig, resume: Option<&Path>, opts: &RunOptions) -> Result<Outcome> {
    let quiet = opts.quiet;
    let file_cfg = model_file_config(cfg)?;
    let mcfg = &file_cfg.model;
    // The effective config: the batch resolved to the model's default when not set.
    let mut resolved = cfg.clone();
    resolved.batch_size = Some(cfg.effective_batch_size(mcfg));
    let cfg = &resolved;
    let batch_size = cfg.effective_batch_size(mcfg);
    if let Some(dir) = resume {
        for d in check_resume_config(cfg, dir, opts.allow_config_change)? {
            log(quiet, format!("resume with a changed config (--allow-config-change): {d}"));
        }
    }
    for stale in remove_stale_temp_dirs(&cfg.output) {
        log(quiet, format!("removed {} (left by an interrupted checkpoint save)", stale.display()));
    }
    let dropouts = dropout_rates(cfg, &file_cfg)?;
    let all_devices = pick_devices(&cfg.device, cfg.num_devices)?;
    let base_device = all_devices[0].clone();
    let devices = autodiff_devices(&all_devices, cfg.grad_checkpointing);
    let device = devices[0].clone();
    let precision = Precision::resolve(&cfg.precision, &cfg.device, &base_device)?;
    prepare_output(cfg, quiet)?;
    let (train_ds, val_ds) = load_datasets(cfg, quiet)?;
    let tokenizer = Arc::new(text_tokenizer(mcfg)?);
    let size = file_cfg.preprocess.size as usize;
    if size != mcfg.vision.image_size {
        return Err(format!("preprocess size {size} differs from the model's image_size {}", mcfg.vision.image_size));
    }
    let pad = text_pad_id(&mcfg.text.arch);
    let loader_cfg = LoaderConfig {
        batch_size,
        workers: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        seed: cfg.seed,
        shuffle: true,
        drop_last: true,
        transform: Transform::Train(cfg.augment.clone()),
        preprocess: file_cfg.preprocess.clone(),
        readers: ReaderPool::new(cfg.data.max_open_files),
    };
    let per_epoch = num_batches(train_ds.len(), batch_size, true);
    if per_epoch == 0 {
        return Err(format!("{} samples make no full batch of {batch_size}", train_ds.len()));
    }
    let total_steps = per_epoch * cfg.epochs;

    let mut optim = AdamW::new(cfg.optim.clone());
    let (mut model, mut state) = initial_model(cfg, &file_cfg, resume, &mut optim, &device, quiet)?;
    // Initialise every lazy parameter now, in module order: a `valid()` copy (accumulation's
    // pass 1) or a replica must see the same values, and the init must not depend on use order.
    materialize(&model);
    model = model.with_dropouts(dropouts);
    if dropouts.any() {
        log(
            quiet,
            format!(
                "training dropout: patch {} (ViT), BERT hidden {} / attention {} (off at evaluation and export)",
                dropouts.patch, dropouts.hidden, dropouts.attention
            ),
        );
    }
    log(quiet, format!("device: {}", describe_device(&cfg.device, &all_devices[0])));
    if devices.len() > 1 {
        log(quiet, format!("data parallel over {} devices, negatives gathered over the global batch", devices.len()));
    }
    log(
        quiet,
        format!(
            "precision {} ({}){}",
            precision.label(),
            match precision {
                Precision::F32 => "f32 throughout".to_string(),
                Precision::Amp(dt) => format!(
                    "towers in {dt:?}, f32 master weights, moments and loss{}",
                    if dt == burn::tensor::FloatDType::F16 { ", dynamic loss scaling" } else { "" }
                ),
            },
            if cfg.grad_checkpointing { ", activation checkpointing" } else { "" }
        ),
    );
    let mut stepper = Stepper::new(&devices, precision, size, cfg.accum_freq).for_backend(&cfg.device);
    stepper.resume(state.nonfinite_in_a_row as u64, state.loss_scale, state.scaler_good_steps);
    // The device's counters start at 0: what was counted before this process is in `state`.
    let mut counted = (0u64, 0u64);
    let metrics_path = cfg.output.join("metrics.jsonl");
    let metrics = open_metrics(&metrics_path, resume.is_some(), state.step)?;
    let progress = progress_bar(quiet, total_steps, state.step);
    let tensorboard = if cfg.tensorboard {
        let dir = cfg.output.join("tensorboard");
        match EventWriter::create(&dir, resume.map(|_| state.step + 1)) {
            Ok(w) => Some(w),
            Err(e) => {
                log(quiet, format!("tensorboard: {}: {e} (no event file written)", dir.display()));
                None
            }
        }
    } else {
        None
    };
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
        tensorboard,
        val_readers: ReaderPool::new(cfg.data.max_open_files),
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
        let mut window_samples = 0usize;
        let mut last_lr = 0.0;
        let mut data_wait_sum = 0.0;
        loop {
            let waiting = Instant::now();
            let Some(mut batch) = loader.next() else { break };
            data_wait_sum += waiting.elapsed().as_secs_f64();
            if !batch.skipped.is_empty() {
                state.skipped_this_epoch += batch.skipped.len();
                state.skipped_total += batch.skipped.len();
                state.io_errors_this_epoch += batch.io_errors;
                state.io_errors_total += batch.io_errors;
                for s in &batch.skipped {
                    run.progress.suspend(|| log(quiet, format!("skipped {s}")));
                }
                check_skip_rate(cfg, &state)?;
            }
            state.batch = batch.index + 1;
            let stepped = batch.len >= 2;
            if stepped {
                let lr = cosine_lr(cfg.optim.lr, cfg.optim.warmup, total_steps, state.step);
                let tokens = TextIds::trimmed(&batch.tokens, batch.len, pad);
                if dropouts.any() {
                    // Dropout masks depend on (seed, step) only: a resumed run draws the same ones.
                    device.seed(crate::rng::Rng::derive(&[cfg.seed, state.step as u64, 0xd0]).next_u64());
                }
                // Queued on the device; nothing is read back until the metrics are due.
                model = stepper.step(model, &mut optim, batch.take_pixels(&loader_cfg.preprocess), &tokens, lr);
                // A skipped update still moves the schedule and the data on (as open_clip's
                // GradScaler does); only AdamW's own step count stays.
                state.step += 1;
                state.samples_seen += batch.len as u64;
                window_samples += batch.len;
                last_lr = lr;
            }
            let epoch_done = state.batch >= per_epoch;
            let stop = state.step >= max_steps;
            let checkpoint_due =
                (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0 && stepped) || epoch_done || stop;
            let eval_due = (cfg.eval_every > 0 && state.step % cfg.eval_every == 0 && stepped) || epoch_done;
            // Also the run's first step: its loss shows at once.
            let log_due = stepped && (cfg.log_every <= 1 || state.step % cfg.log_every == 0 || first_loss.is_none());
            if window_samples > 0 && (log_due || checkpoint_due || eval_due) {
                // The one wait for the device: the last step's numbers and the counters.
                if let Some(r) = stepper.read(&model) {
                    run.account(&mut state, &r, &mut counted)?;
                    // Report the last step only if it was applied (not a skip of either kind).
                    if r.loss.is_finite() && r.grad_norm.is_finite() && r.nonfinite_in_a_row == 0 {
                        first_loss.get_or_insert(r.loss);
                        last_loss = Some(r.loss);
                        let dt = window.elapsed().as_secs_f64().max(1e-9);
                        run.report_step(&StepMetrics {
                            step: state.step,
                            epoch: state.epoch,
                            loss: r.loss,
                            lr: last_lr,
                            logit_scale: r.logit_scale,
                            grad_norm: r.grad_norm,
                            batch: batch.len,
                            samples_per_s: window_samples as f64 / dt,
                            data_wait_s: data_wait_sum,
                        });
                    }
                }
                window = Instant::now();
                window_samples = 0;
                data_wait_sum = 0.0;
            } else if stepped {
                run.progress.set_position(state.step as u64);
            }
            // After the readback: the epoch's counts include its last steps.
            if epoch_done {
                run.end_epoch(&mut state);
            }
            if checkpoint_due {
                let dir = run.progress.suspend(|| save_checkpoint(cfg, &file_cfg, &model, &optim, &state))?;
                log(quiet, format!("checkpoint {}", dir.display()));
            }
            if eval_due {
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
    // As `model.eval()`: the returned model runs without dropout.
    let model = model.with_dropouts(dermlip::model::Dropouts::default());
    log(quiet, format!("trained {} steps in {:.1} s", state.step, started.elapsed().as_secs_f64()));
    let final_dir = export(cfg, &file_cfg, &model, quiet)?;
    if let Err(e) = crate::plot::write_plots(&metrics_path, &cfg.output) {
        log(quiet, format!("plots: {e}"));
    }
    let evals = run.evals;
    Ok(Outcome { state, final_dir, first_loss, last_loss, evals, model, file_config: file_cfg })
}

/// Stops the run when the skipped samples pass `data.max_skip_rate` of those read, once
/// `data.skip_rate_min_samples` were read.
fn check_skip_rate(cfg: &TrainConfig, state: &TrainState) -> Result<()> {
    let read = state.samples_seen + state.skipped_total as u64;
    let rate = state.skipped_total as f64 / read.max(1) as f64;
    if read >= cfg.data.skip_rate_min_samples && rate > cfg.data.max_skip_rate {
        return Err(format!(
            "stopping: {} of {read} samples read were skipped ({:.2} %, over data.max_skip_rate {:.2} %): {} I/O \
             errors, {} unreadable/undecodable samples. Check the data (the log lists each skipped sample), or raise \
             --max-skip-rate",
            state.skipped_total,
            100.0 * rate,
            100.0 * cfg.data.max_skip_rate,
            state.io_errors_total,
            state.skipped_total - state.io_errors_total
        ));
    }
    Ok(())
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
