//! Long-run safety and the recipe (issue 18, the CPU-testable parts): resume refuses a changed
//! config, stale checkpoint temp folders are removed, non-finite steps are skipped and counted
//! (and stop the run when they persist), the per-worker LRU of open shards/archives, I/O errors
//! counted apart from decode skips, the skipped-sample rate guard, training-only dropout, the
//! per-model default batch, TensorBoard event files checked against the Python writer, and
//! `trainer --help`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use dermlip::input::tokenizer::{text_pad_id, TextIds};
use dermlip::model::Dropouts;
use dermlip::{Clip, ModelFileConfig};
use dermlip_trainer::checkpoint::{check_resume_config, latest_checkpoint, remove_stale_temp_dirs};
use dermlip_trainer::config::{default_batch_size, TrainConfig};
use dermlip_trainer::data::{CsvSpec, Dataset, ReadError, Reader};
use dermlip_trainer::loader::{EpochLoader, LoaderConfig, ReaderPool, Transform};
use dermlip_trainer::optim::{AdamW, OptimConfig};
use dermlip_trainer::step::{guarded_step, materialize, Precision, Stepper, INIT_LOSS_SCALE};
use dermlip_trainer::synth::{generate, tiny_config_json, SynthConfig};
use dermlip_trainer::tensorboard;
use dermlip_trainer::train::{dropout_rates, model_file_config, text_tokenizer, train_with, Outcome, RunOptions};

fn run(cfg: &TrainConfig, resume: Option<&Path>, allow: bool) -> Result<Outcome, String> {
    let _turn = crate::rng_turn();
    train_with(cfg, resume, &RunOptions { quiet: true, allow_config_change: allow })
}

fn synth(dir: &Path) {
    generate(dir, &SynthConfig::default()).expect("generate");
    std::fs::write(dir.join("tiny_clip_config.json"), tiny_config_json(64).to_string()).unwrap();
}

fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    let mut cfg = TrainConfig {
        output: out.to_path_buf(),
        device: "flex".into(),
        seed: 1,
        batch_size: Some(32),
        epochs: 2,
        log_every: 0,
        checkpoint_every: 0,
        keep_last: 2,
        eval_every: 0,
        export_web_bundle: false,
        ..TrainConfig::default()
    };
    cfg.data.train_csv = Some(data.join("Derm1M_v2_pretrain.csv"));
    cfg.data.train_images = vec![data.join("zips")];
    cfg.data.workers = 2;
    cfg.model.config = Some(data.join("tiny_clip_config.json"));
    cfg.optim.lr = 1e-3;
    cfg.optim.warmup = 10;
    cfg
}

fn shards(data: &Path) -> String {
    format!("{}/shards/train-{{00000..00003}}.tar", data.display())
}

fn event_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("tfevents"))
        .collect();
    v.sort();
    v
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A resume with a changed batch size (or accumulation, lr schedule, data, model) is refused with
/// the fields named; `--allow-config-change` lets it through; an unchanged resume (and changes
/// that shift nothing: output cadence, workers, max_steps) passes. Stale `.step-*.tmp` folders are
/// removed at start. The run writes TensorBoard events, and the resumed run a second file that
/// starts with a session-start record.
#[test]
fn resume_refuses_a_changed_config_and_cleans_stale_temp_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let mut cfg = tiny_config(&data, &tmp.path().join("run"));
    cfg.max_steps = Some(2);
    cfg.checkpoint_every = 1;
    let out = run(&cfg, None, false).expect("first run");
    assert_eq!(out.state.step, 2);
    let ckpt = latest_checkpoint(&cfg.output).expect("a checkpoint");

    // TensorBoard: one event file, both CRCs valid, one scalar event per step.
    let files = event_files(&cfg.output.join("tensorboard"));
    assert_eq!(files.len(), 1);
    let records = tensorboard::read_records(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(contains(&records[0], b"brain.Event:2"));
    assert_eq!(records.iter().filter(|r| contains(r, b"train/loss")).count(), 2);

    // A changed batch size: refused, the field named.
    let mut changed = cfg.clone();
    changed.batch_size = Some(16);
    changed.max_steps = Some(3);
    let err = run(&changed, Some(&ckpt), false).err().expect("a changed batch size must be refused");
    assert!(err.contains("batch_size") && err.contains("--allow-config-change"), "{err}");
    assert!(err.contains("32") && err.contains("16"), "{err}");
    // Other schedule/data/model fields are named too.
    let mut many = cfg.clone();
    many.accum_freq = 2;
    many.optim.lr = 5e-4;
    many.epochs = 3;
    many.data.train_csv = Some(data.join("other.csv"));
    many.model.patch_dropout = Some(0.5);
    let err = check_resume_config(&many, &ckpt, false).unwrap_err();
    for field in ["accum_freq", "optim.lr", "epochs", "data.train_csv", "model.patch_dropout"] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
    assert!(!err.contains("batch_size"), "{err}");
    // Fields that shift nothing are free.
    let mut free = cfg.clone();
    free.max_steps = Some(9);
    free.data.workers = 1;
    free.log_every = 3;
    free.checkpoint_every = 7;
    free.eval_every = 5;
    free.num_devices = 2;
    assert_eq!(check_resume_config(&free, &ckpt, false).unwrap(), Vec::<String>::new());

    // A crashed save left a temp folder: removed when the run starts.
    let stale = cfg.output.join("checkpoints/.step-00000007.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("open_clip_model.safetensors"), b"half written").unwrap();

    // Allowed with the flag (and it resumes where the checkpoint stands).
    let allowed = run(&changed, Some(&ckpt), true).expect("--allow-config-change");
    assert_eq!(allowed.state.step, 3);
    assert!(!stale.exists(), "the stale temp folder must be removed");

    // An unchanged config resumes.
    let mut same = cfg.clone();
    same.max_steps = Some(3);
    let resumed = run(&same, Some(&ckpt), false).expect("same config");
    assert_eq!(resumed.state.step, 3);
    let files = event_files(&cfg.output.join("tensorboard"));
    assert_eq!(files.len(), 3, "one event file per run");
    let last = tensorboard::read_records(&std::fs::read(files.last().unwrap()).unwrap()).unwrap();
    // file version, then the session start at step 3 (step 2's checkpoint + 1).
    assert_eq!(last[1], tensorboard::session_start_event(f64::from_le_bytes(last[1][1..9].try_into().unwrap()), 3));

    // remove_stale_temp_dirs on its own: only `.step-*.tmp` folders go.
    let stale = cfg.output.join("checkpoints/.step-00000009.tmp");
    std::fs::create_dir_all(&stale).unwrap();
    let removed = remove_stale_temp_dirs(&cfg.output);
    assert_eq!(removed, vec![stale.clone()]);
    assert!(latest_checkpoint(&cfg.output).is_some());
}

/// A step with a NaN loss is skipped: the model, AdamW's moments and its step count stay; a finite
/// step then updates.
#[test]
fn nonfinite_step_is_skipped() {
    let file_cfg = ModelFileConfig::from_json_str(&tiny_config_json(32).to_string()).unwrap();
    let mcfg = &file_cfg.model;
    let device = Device::flex().autodiff();
    let model = {
        let _turn = crate::rng_turn();
        device.seed(3);
        Clip::new(mcfg, &device).init_parameters()
    };
    materialize(&model);
    let tokenizer = text_tokenizer(mcfg).unwrap();
    let n = 4;
    let ids: Vec<i32> = ["a red lesion", "blue", "green dot", "a cross"]
        .iter()
        .flat_map(|t| tokenizer.encode(t).unwrap())
        .map(|i| i as i32)
        .collect();
    let tokens = TextIds::trimmed(&ids, n, text_pad_id(&mcfg.text.arch));
    let size = 32;
    let good: Vec<f32> = (0..n * 3 * size * size).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let mut bad = good.clone();
    bad[5] = f32::NAN;
    let weights = |m: &Clip| {
        let vit = m.visual.vit().unwrap();
        (
            vit.proj.val().into_data().try_to_vec::<f32>().unwrap(),
            m.logit_scale.val().into_data().try_to_vec::<f32>().unwrap(),
        )
    };
    let before = weights(&model);
    let mut optim = AdamW::new(OptimConfig::default());
    let devices = [device.clone()];
    let (model, o) = guarded_step(model, &mut optim, &devices, &bad, &tokens, size, 1, 1e-3);
    assert!(o.skipped && !o.loss.is_finite(), "{o:?}");
    assert_eq!(optim.steps_taken(), 0);
    // The guard runs on the device: the moments exist but a skipped step left them at zero.
    for (k, t) in optim.state_tensors() {
        assert!(t.try_to_vec::<f32>().unwrap().iter().all(|v| *v == 0.0), "moment {k} moved on a skipped step");
    }
    assert_eq!(weights(&model), before, "a skipped step leaves the weights");
    let (model, o) = guarded_step(model, &mut optim, &devices, &good, &tokens, size, 2, 1e-3);
    assert!(!o.skipped && o.loss.is_finite() && o.grad_norm.is_finite(), "{o:?}");
    assert_eq!(optim.steps_taken(), 1);
    assert_ne!(weights(&model).0, before.0);
    // With f16 loss scaling a non-finite loss is a non-finite step and a scaler back-off (torch's
    // GradScaler halves on it too: the gradients of a NaN loss are NaN); a good step then keeps the
    // halved scale.
    let mut stepper = Stepper::new(&devices, Precision::Amp(FloatDType::F16), size, 1);
    let at_start = weights(&model);
    let model = stepper.step(model, &mut optim, bad.clone(), &tokens, 1e-3);
    let r = stepper.read(&model).unwrap();
    assert_eq!((r.nonfinite_total, r.nonfinite_in_a_row, r.scaler_skips), (1, 1, 1), "{r:?}");
    assert_eq!(r.loss_scale, INIT_LOSS_SCALE / 2.0, "{r:?}");
    assert_eq!(optim.steps_taken(), 1);
    assert_eq!(weights(&model), at_start, "a skipped f16 step leaves the weights");
    let model = stepper.step(model, &mut optim, good.clone(), &tokens, 1e-3);
    let r = stepper.read(&model).unwrap();
    assert_eq!((r.nonfinite_total, r.nonfinite_in_a_row), (1, 0), "{r:?}");
    assert!(r.loss.is_finite() && r.loss_scale <= INIT_LOSS_SCALE / 2.0, "{r:?}");
}

/// Non-finite steps in a row stop the run (here a NaN learning rate poisons the weights after the
/// first step): the steps are logged in metrics.jsonl and the error says how many and what to do.
#[test]
fn persistent_nonfinite_steps_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let mut cfg = tiny_config(&data, &tmp.path().join("run"));
    cfg.optim.lr = f64::NAN;
    cfg.max_nonfinite_steps = 3;
    cfg.max_steps = Some(20);
    let err = run(&cfg, None, false).err().expect("the run must stop");
    assert!(err.contains("3 optimisation steps in a row") && err.contains("--max-nonfinite-steps"), "{err}");
    let metrics = std::fs::read_to_string(cfg.output.join("metrics.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "nonfinite_step")
        .collect();
    assert_eq!(events.len(), 3, "{metrics}");
    assert_eq!(events.iter().map(|e| e["step"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3, 4]);
    assert_eq!(events[2]["in_a_row"], 3);
}

/// Each reader holds at most its capacity of open shard files (LRU), and the readers kept in a
/// pool across epochs do not open (re-parse) the archives again.
#[test]
fn reader_lru_bounds_open_files_and_keeps_archives_across_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let wds = Dataset::from_webdataset(&shards(&data)).unwrap();
    // Round-robin over the 4 shards: the worst order for a small cache.
    let mut by_shard: Vec<Vec<&dermlip_trainer::data::Sample>> = vec![Vec::new(); wds.shards.len()];
    for s in &wds.samples {
        if let dermlip_trainer::data::Location::Tar { shard, .. } = s.location {
            by_shard[shard].push(s);
        }
    }
    let rounds = by_shard.iter().map(Vec::len).max().unwrap();
    let order: Vec<_> = (0..rounds).flat_map(|i| by_shard.iter().filter_map(move |v| v.get(i).copied())).collect();
    let mut small = Reader::with_capacity(2);
    let mut big = Reader::with_capacity(8);
    for s in &order {
        assert!(small.read(&wds, s).is_ok());
        assert!(big.read(&wds, s).is_ok());
        assert!(small.open_files() <= 2);
    }
    assert_eq!(small.peak_open, 2);
    assert!(small.opened > 4, "evictions reopen shards: {}", small.opened);
    assert_eq!(big.opened, 4, "each shard opened once");
    assert_eq!(big.peak_open, 4);

    // Zip archives through the loader: a pool shared by two epochs opens each archive once per
    // reader; a fresh pool for the second epoch (the old behaviour) parses them again.
    let zipped = Arc::new(
        Dataset::from_csv(&CsvSpec {
            csv: data.join("Derm1M_v2_pretrain.csv"),
            images: vec![data.join("zips")],
            image_key: "filename".into(),
            caption_key: "truncated_caption".into(),
            label_key: None,
        })
        .unwrap(),
    );
    assert_eq!(zipped.archives.len(), 2);
    let tok = Arc::new(dermlip::input::tokenizer::TextTokenizer::Clip(
        dermlip::input::tokenizer::ClipTokenizer::new().unwrap().with_context_length(16).unwrap(),
    ));
    let cfg = |pool: ReaderPool| LoaderConfig {
        batch_size: 64,
        workers: 2,
        prefetch: 2,
        seed: 1,
        shuffle: true,
        drop_last: false,
        transform: Transform::Eval,
        preprocess: dermlip::input::preprocess::PreprocessConfig { size: 32, ..Default::default() },
        readers: pool,
    };
    let pool = ReaderPool::new(1);
    let epoch = |c: &LoaderConfig, e: u64| {
        EpochLoader::new(Arc::clone(&zipped), Arc::clone(&tok), c, e, 0).map(|b| b.len + b.skipped.len()).sum::<usize>()
    };
    let shared = cfg(pool.clone());
    assert_eq!(epoch(&shared, 0), zipped.len());
    let (opened_1, peak_1, readers) = pool.stats();
    assert_eq!(readers, 2, "both workers' readers are back in the pool");
    assert_eq!(peak_1, 1, "capacity 1: one archive open per reader");
    let pool8 = ReaderPool::new(8);
    let roomy = cfg(pool8.clone());
    epoch(&roomy, 0);
    let (first, _, _) = pool8.stats();
    assert!((2..=4).contains(&first), "each of 2 readers opens each of 2 archives at most once: {first}");
    epoch(&roomy, 1);
    assert_eq!(pool8.stats().0, first, "no archive re-opened (central directory re-parsed) in epoch 2");
    assert!(opened_1 >= first);
    let fresh = ReaderPool::new(8);
    epoch(&cfg(fresh.clone()), 1);
    assert!(fresh.stats().0 >= 2, "a fresh pool parses the archives again");
}

/// A shard damaged after indexing (truncated) gives I/O errors, counted apart from the samples
/// that fail to decode; the intact dataset has decode skips but no I/O errors.
#[test]
fn corrupt_shard_is_counted_as_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let ds = Arc::new(Dataset::from_webdataset(&shards(&data)).unwrap());
    let tok = Arc::new(dermlip::input::tokenizer::TextTokenizer::Clip(
        dermlip::input::tokenizer::ClipTokenizer::new().unwrap().with_context_length(16).unwrap(),
    ));
    let cfg = LoaderConfig {
        batch_size: 50,
        workers: 2,
        prefetch: 2,
        seed: 1,
        shuffle: false,
        drop_last: false,
        transform: Transform::Eval,
        preprocess: dermlip::input::preprocess::PreprocessConfig { size: 32, ..Default::default() },
        readers: ReaderPool::new(2),
    };
    let count = || {
        EpochLoader::new(Arc::clone(&ds), Arc::clone(&tok), &cfg, 0, 0)
            .fold((0, 0), |(s, io), b| (s + b.skipped.len(), io + b.io_errors))
    };
    let (skipped, io) = count();
    assert!(skipped >= 1, "the synthetic garbage image fails to decode");
    assert_eq!(io, 0, "decode failures are not I/O errors");
    // Truncate shard 0 to its first KiB.
    let f = std::fs::OpenOptions::new().write(true).open(&ds.shards[0]).unwrap();
    f.set_len(1024).unwrap();
    drop(f);
    let in_shard_0 = ds
        .samples
        .iter()
        .filter(|s| matches!(s.location, dermlip_trainer::data::Location::Tar { shard: 0, offset, size } if offset + size > 1024))
        .count();
    assert!(in_shard_0 > 10);
    let mut reader = Reader::default();
    let last_of_0 = ds
        .samples
        .iter()
        .rfind(|s| matches!(s.location, dermlip_trainer::data::Location::Tar { shard: 0, .. }))
        .unwrap();
    assert!(matches!(reader.read_sample(&ds, last_of_0), Err(ReadError::Io(_))));
    let (skipped2, io2) = count();
    assert_eq!(io2, in_shard_0, "every sample past the cut is an I/O error");
    assert!(skipped2 >= io2);
}

/// More skipped samples than `data.max_skip_rate` (after `skip_rate_min_samples`) stop the run
/// with a message naming the I/O errors; with the guard off the same data trains and counts them.
/// The I/O errors: one of the zip archives has its entry data damaged (its central directory, read
/// when the index is built, is intact), so reading those entries fails.
#[test]
fn skip_rate_above_threshold_stops_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let zip = data.join("zips/Derm1M_part2.zip");
    let mut bytes = std::fs::read(&zip).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 10..n / 2] {
        *b ^= 0x5a;
    }
    std::fs::write(&zip, bytes).unwrap();
    let mut cfg = tiny_config(&data, &tmp.path().join("run"));
    cfg.data.skip_rate_min_samples = 50;
    cfg.max_steps = Some(6);
    let err = run(&cfg, None, false).err().expect("a good part of the samples are unreadable");
    assert!(err.contains("max_skip_rate") && err.contains("I/O errors"), "{err}");
    assert!(!err.contains(": 0 I/O errors"), "{err}");
    cfg.data.max_skip_rate = 1.0;
    cfg.output = tmp.path().join("run-off");
    let out = run(&cfg, None, false).expect("guard off");
    assert_eq!(out.state.step, 6);
    assert!(out.state.io_errors_total > 0 && out.state.io_errors_total <= out.state.skipped_total, "{:?}", out.state);
}

/// The event encoding is byte-identical to the Python `tensorboard` package's (fixture written by
/// `tests/tensorboard_fixture.py`, wall times pinned).
#[test]
fn tensorboard_events_match_the_python_writer() {
    let fixture =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tensorboard_reference.tfevents"))
            .unwrap();
    let mut ours = Vec::new();
    ours.extend(tensorboard::tfrecord(&tensorboard::file_version_event(1700000000.0)));
    ours.extend(tensorboard::tfrecord(&tensorboard::session_start_event(1700000000.125, 40)));
    let scalars: [(f64, i64, Vec<(&str, f32)>); 3] = [
        (1700000000.25, 1, vec![("train/loss", 3.4657359), ("train/lr", 1e-4)]),
        (1700000001.5, 2, vec![("train/loss", 2.5), ("train/grad_norm", 0.0)]),
        (1700000002.75, 300, vec![("eval/i2t_r1", 0.25), ("train/loss", f32::NAN)]),
    ];
    for (wall, step, values) in &scalars {
        ours.extend(tensorboard::tfrecord(&tensorboard::scalars_event(*wall, *step, values)));
    }
    assert_eq!(ours.len(), fixture.len());
    assert!(ours == fixture, "event bytes differ from the Python writer's");
    assert_eq!(tensorboard::read_records(&fixture).unwrap().len(), 5);
    // A flipped byte fails the CRC.
    let mut bad = fixture.clone();
    bad[40] ^= 1;
    assert!(tensorboard::read_records(&bad).is_err());
}

/// Dropout and patch dropout act only in a training (autodiff) forward: the inference copy is
/// exactly the model without them. The rates come from the model files (PubMedBERT's
/// `hidden_dropout_prob` 0.1, `vision_cfg.patch_dropout`) unless the config overrides them.
#[test]
fn dropout_is_training_only_and_read_from_the_model_files() {
    let _turn = crate::rng_turn();
    let tmp = tempfile::tempdir().unwrap();
    // ViT: patch dropout from the open_clip config.
    let mut json = tiny_config_json(32);
    json["model_cfg"]["vision_cfg"]["patch_dropout"] = 0.5.into();
    let path = tmp.path().join("open_clip_config.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let mut cfg = TrainConfig::default();
    cfg.model.config = Some(path);
    let file_cfg = model_file_config(&cfg).unwrap();
    let rates = dropout_rates(&cfg, &file_cfg).unwrap();
    assert_eq!(rates, Dropouts { patch: 0.5, hidden: 0.0, attention: 0.0 });
    cfg.model.patch_dropout = Some(0.25);
    assert_eq!(dropout_rates(&cfg, &file_cfg).unwrap().patch, 0.25);

    let device = Device::flex().autodiff();
    device.seed(5);
    let plain = Clip::new(&file_cfg.model, &device).init_parameters();
    materialize(&plain);
    let dropped = plain.clone().with_dropouts(rates);
    let pixels: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let img = |d: &Device| Tensor::<4>::from_data(TensorData::new(pixels.clone(), [2, 3, 32, 32]), d);
    let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let inner = device.clone().inner();
    let inference = vec(plain.valid().encode_image(img(&inner)));
    assert_eq!(vec(dropped.valid().encode_image(img(&inner))), inference, "no dropout at inference");
    let train_plain = vec(plain.encode_image(img(&device)));
    let train_dropped = vec(dropped.encode_image(img(&device)));
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(diff(&train_plain, &inference) < 1e-5);
    assert!(diff(&train_dropped, &train_plain) > 1e-3, "patch dropout must act in training");
    // The masks follow the device seed (the trainer seeds each step from (seed, step)).
    device.seed(11);
    let first = vec(dropped.encode_image(img(&device)));
    device.seed(11);
    assert_eq!(vec(dropped.encode_image(img(&device))), first, "same seed, same masks");
    assert_eq!(
        vec(dropped.clone().with_dropouts(Dropouts::default()).encode_image(img(&device))),
        train_plain,
        "Dropouts::default() turns it off"
    );

    // BERT: the rates of the text model's config.json (0.1 in the tiny PubMedBERT).
    let mut cfg = TrainConfig::default();
    cfg.model.init = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-panderm"));
    let file_cfg = model_file_config(&cfg).unwrap();
    let rates = dropout_rates(&cfg, &file_cfg).unwrap();
    assert_eq!(rates, Dropouts { patch: 0.0, hidden: 0.1, attention: 0.1 });
    cfg.model.hidden_dropout = Some(0.0);
    assert_eq!(dropout_rates(&cfg, &file_cfg).unwrap().hidden, 0.0);
    cfg.model.attention_dropout = Some(1.5);
    assert!(dropout_rates(&cfg, &file_cfg).is_err());
    let plain = Clip::new(&file_cfg.model, &device).init_parameters();
    materialize(&plain);
    let dropped = plain.clone().with_dropouts(rates);
    let tokenizer = text_tokenizer(&file_cfg.model).unwrap();
    let ids: Vec<i32> =
        ["a red lesion", "blue"].iter().flat_map(|t| tokenizer.encode(t).unwrap()).map(|i| i as i32).collect();
    let tokens = TextIds::trimmed(&ids, 2, text_pad_id(&file_cfg.model.text.arch));
    let inference = vec(plain.valid().encode_text(tokens.tensor(&inner)));
    assert_eq!(vec(dropped.valid().encode_text(tokens.tensor(&inner))), inference);
    let train_plain = vec(plain.encode_text(tokens.tensor(&device)));
    assert!(diff(&train_plain, &inference) < 1e-5);
    let out = dropped.encode_text(tokens.tensor(&device));
    assert!(diff(&vec(out.clone()), &train_plain) > 1e-4, "BERT dropout must act in training");
    // The explicit attention path (attention-probability dropout) has gradients.
    let grads = out.sum().backward();
    let bert = match &dropped.text {
        dermlip::model::clip::TextTower::Bert(b) => b,
        _ => unreachable!(),
    };
    assert!(bert.layers[0].attention.query.weight.val().grad(&grads).is_some());
    // Only the attention dropout: still differs (the explicit attention path is taken).
    let only_attn = plain.clone().with_dropouts(Dropouts { attention: 0.5, ..Dropouts::default() });
    assert!(diff(&vec(only_attn.encode_text(tokens.tensor(&device))), &train_plain) > 1e-4);
}

/// The Derm1M scripts' batch per model when `batch_size` is not set.
#[test]
fn default_batch_size_follows_the_model() {
    use dermlip::config::{Activation, ClipConfig};
    assert_eq!(default_batch_size(&ClipConfig::vit_b_16(Activation::QuickGelu)), 4096);
    assert_eq!(default_batch_size(&ClipConfig::panderm_base_pubmedbert_256()), 2048);
    let cfg = TrainConfig::default();
    assert_eq!(cfg.batch_size, None);
    assert_eq!(cfg.effective_batch_size(&ClipConfig::panderm_base_pubmedbert_256()), 2048);
    let set = TrainConfig { batch_size: Some(64), ..TrainConfig::default() };
    assert_eq!(set.effective_batch_size(&ClipConfig::panderm_base_pubmedbert_256()), 64);
}

/// `trainer --help` describes every flag.
#[test]
fn help_describes_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trainer")).arg("-h").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut flags = 0;
    for line in text.lines().filter(|l| l.trim_start().starts_with('-')) {
        flags += 1;
        let rest = line.trim_start();
        // `--flag <VALUE>  Description`: the description follows two or more spaces.
        let described = rest.split_once("  ").is_some_and(|(_, d)| !d.trim().is_empty());
        assert!(described, "no help text: {line}");
    }
    assert!(flags >= 49, "{flags} flags: {text}");
    for flag in [
        "--allow-config-change",
        "--max-nonfinite-steps",
        "--max-open-files",
        "--max-skip-rate",
        "--skip-rate-min-samples",
        "--no-tensorboard",
        "--patch-dropout",
        "--hidden-dropout",
        "--attention-dropout",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
