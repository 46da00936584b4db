//! End-to-end checks of the trainer on the synthetic mini-Derm1M (CPU, flex backend):
//! learning, skip-and-count of defective data in every layout, exact resume after SIGKILL, and
//! the open_clip export re-loading to identical embeddings.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::{Int, Tensor, TensorData};
use dermlip::weights::StateDict;
use dermlip::Clip;
use dermlip_trainer::config::TrainConfig;
use dermlip_trainer::data::{CsvSpec, Dataset};
use dermlip_trainer::synth::{generate, tiny_config_json, SynthConfig, SynthReport};
use dermlip_trainer::train::train;

/// In-process trainings take turns with every other user of Burn's CPU RNG ([`crate::rng_turn`]).
pub(crate) fn train_alone(cfg: &TrainConfig) -> dermlip_trainer::train::Outcome {
    let _turn = crate::rng_turn();
    train(cfg, None, true).expect("training")
}

pub(crate) fn synth(dir: &Path) -> SynthReport {
    let report = generate(dir, &SynthConfig::default()).expect("generate");
    std::fs::write(dir.join("tiny_clip_config.json"), tiny_config_json(64).to_string()).unwrap();
    report
}

pub(crate) fn tiny_config(data: &Path, out: &Path) -> TrainConfig {
    let mut cfg = TrainConfig {
        output: out.to_path_buf(),
        device: "flex".into(),
        seed: 1,
        batch_size: Some(32),
        epochs: 30,
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

pub(crate) fn losses(metrics: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("event").is_none())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

pub(crate) fn mean(v: &[(u64, f64)]) -> f64 {
    v.iter().map(|x| x.1).sum::<f64>() / v.len() as f64
}

/// The bars of the synthetic mini-Derm1M runs: the loss (mean of the first and the last 10 steps)
/// drops below 0.6×, and retrieval on all `val` held-out pairs beats chance 8× at R@1 both ways
/// with image→text R@10 ≥ 0.6.
pub(crate) fn assert_learned(first: f64, last: f64, eval: &dermlip_trainer::evaluate::EvalReport, val: usize) {
    assert!(last < 0.6 * first, "loss did not drop clearly: {first} -> {last}");
    assert_eq!(eval.n, val);
    assert!(
        eval.image_to_text_r1 >= 8.0 * eval.chance_r1,
        "i→t R@1 {} vs chance {}",
        eval.image_to_text_r1,
        eval.chance_r1
    );
    assert!(eval.text_to_image_r1 >= 8.0 * eval.chance_r1, "t→i R@1 {}", eval.text_to_image_r1);
    assert!(eval.image_to_text_r10 >= 0.6, "i→t R@10 {}", eval.image_to_text_r10);
}

/// The CI proof: a tiny CLIP trained on the CSV + zip layout learns (loss drops clearly, held-out
/// retrieval far above chance), while the defective rows and images are skipped and counted.
#[test]
fn tiny_clip_learns_on_synthetic_derm1m_csv_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let report = synth(&data);
    let mut cfg = tiny_config(&data, &tmp.path().join("run"));
    cfg.data.val_csv = Some(data.join("Derm1M_v2_validation.csv"));
    cfg.data.val_images = vec![data.join("zips")];
    cfg.data.label_key = Some("disease_label".into());
    cfg.data.zero_shot_templates = dermlip_trainer::synth::zero_shot_templates();
    cfg.export_web_bundle = true;
    let started = Instant::now();
    let out = train_alone(&cfg);
    let secs = started.elapsed().as_secs_f64();
    let curve = losses(&cfg.output.join("metrics.jsonl"));
    let (first, last) = (mean(&curve[..10]), mean(&curve[curve.len() - 10..]));
    let (step, eval) = out.evals.last().expect("an evaluation at the last epoch end");
    eprintln!(
        "synthetic CSV+zip: {} steps in {secs:.1} s; loss (mean of 10 steps) {first:.3} -> {last:.3}; eval @ {step}: {}",
        curve.len(),
        eval.summary()
    );
    assert_eq!(curve.len(), 30 * 12, "386 usable samples make 12 batches of 32 per epoch");
    assert_learned(first, last, eval, report.val);
    let zs = eval.zero_shot_accuracy.expect("zero-shot accuracy over the disease_label classes");
    assert_eq!(eval.zero_shot_classes, 24);
    assert!(zs >= 3.0 / 24.0, "zero-shot accuracy {zs} vs chance 1/24");
    // The two undecodable images are skipped (and counted) whenever they fall in a batch.
    assert!(out.state.skipped_total > 0 && out.state.skipped_total <= 2 * 30, "{}", out.state.skipped_total);
    assert!(cfg.output.join("web-bundle/manifest.json").is_file());
    for png in ["loss.png", "lr.png", "recall.png"] {
        assert!(cfg.output.join(png).is_file(), "{png}");
    }

    // The export re-loads in the core crate and gives identical embeddings.
    let file_cfg = &out.file_config;
    let sd = StateDict::from_file(&out.final_dir.join("open_clip_model.safetensors")).unwrap();
    let device = burn::tensor::Device::flex();
    let reloaded = Clip::from_state_dict(&file_cfg.model, sd, &device).unwrap();
    let text = std::fs::read_to_string(out.final_dir.join("open_clip_config.json")).unwrap();
    assert_eq!(&dermlip::ModelFileConfig::from_json_str(&text).unwrap(), file_cfg);
    let trained = burn::module::Module::valid(&out.model);
    let pixels: Vec<f32> = (0..2 * 3 * 64 * 64).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let img = || Tensor::<4>::from_data(TensorData::new(pixels.clone(), [2, 3, 64, 64]), &device);
    let tok = dermlip::input::tokenizer::ClipTokenizer::new().unwrap().with_context_length(16).unwrap();
    let ids: Vec<i32> = ["a large red circle lesion on plain skin", "a small blue cross"]
        .iter()
        .flat_map(|t| tok.encode(t).unwrap())
        .map(|x| x as i32)
        .collect();
    let txt = || Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [2, 16]), &device);
    for (a, b) in [
        (trained.encode_image(img()), reloaded.encode_image(img())),
        (trained.encode_text(txt()), reloaded.encode_text(txt())),
    ] {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b, "re-loaded export must give bit-identical embeddings");
    }
    let ls = out.model.logit_scale.val().into_data().try_to_vec::<f32>().unwrap()[0];
    assert_eq!(ls, reloaded.logit_scale.val().into_data().try_to_vec::<f32>().unwrap()[0]);
    assert!((0.0..=100f32.ln()).contains(&ls));
}

/// Every layout indexes the same good samples and counts each deliberate defect; training on
/// WebDataset shards and on a plain folder runs through them.
#[test]
fn layouts_skip_and_count_defects() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let report = synth(&data);
    let spec = |images: PathBuf| CsvSpec {
        csv: data.join("Derm1M_v2_pretrain.csv"),
        images: vec![images],
        image_key: "filename".into(),
        caption_key: "truncated_caption".into(),
        label_key: None,
    };
    let zipped = Dataset::from_csv(&spec(data.join("zips"))).unwrap();
    assert_eq!(zipped.report.bad_rows, report.csv_bad_rows);
    assert_eq!(zipped.report.missing_images, report.csv_missing_images);
    assert_eq!(zipped.len(), report.train_good + report.corrupt_images);
    // A plain folder is not stat'ed up front: the missing file is skipped when read.
    let folder = Dataset::from_csv(&spec(data.join("images"))).unwrap();
    assert_eq!(folder.report.bad_rows, report.csv_bad_rows);
    assert_eq!(folder.len(), report.train_good + report.corrupt_images + report.csv_missing_images);
    // Caption column selectable.
    let mut long = spec(data.join("zips"));
    long.caption_key = "caption".into();
    let long = Dataset::from_csv(&long).unwrap();
    assert!(long.samples[0].caption.ends_with("Synthetic sample."));
    let wds = Dataset::from_webdataset(&format!("{}/shards/train-{{00000..00003}}.tar", data.display())).unwrap();
    assert_eq!(wds.report.incomplete_samples, report.wds_incomplete);
    assert_eq!(wds.report.truncated_shards, report.wds_truncated_shards);
    assert_eq!(wds.len(), report.train_good - report.wds_lost_in_truncation + 1 /* the corrupt image */);

    for (name, cfg_fn) in [
        (
            "wds",
            Box::new(|c: &mut TrainConfig| {
                c.data.train_csv = None;
                c.data.train_shards = Some(format!("{}/shards/train-{{00000..00003}}.tar", data.display()));
            }) as Box<dyn Fn(&mut TrainConfig)>,
        ),
        ("folder", Box::new(|c: &mut TrainConfig| c.data.train_images = vec![data.join("images")])),
    ] {
        let mut cfg = tiny_config(&data, &tmp.path().join(name));
        cfg.epochs = 2;
        cfg_fn(&mut cfg);
        let out = train_alone(&cfg);
        assert_eq!(out.state.step, 2 * 12, "{name}");
        assert!(out.state.skipped_total <= 2 * 3, "{name}: {}", out.state.skipped_total);
        let curve = losses(&cfg.output.join("metrics.jsonl"));
        assert!(curve.iter().all(|(_, l)| l.is_finite()));
    }
}

/// A run killed with SIGKILL and resumed from its last checkpoint reproduces the uninterrupted
/// run's loss curve (same seed, CPU) to 1e-5.
#[test]
fn sigkill_and_resume_reproduces_the_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let exe = env!("CARGO_BIN_EXE_trainer");
    let base = |out: &Path| {
        let mut cfg = tiny_config(&data, out);
        cfg.epochs = 8;
        cfg.max_steps = Some(60);
        cfg.checkpoint_every = 5;
        cfg.accum_freq = 2; // exercise the cached-feature accumulation path too
        cfg.optim.grad_clip_norm = Some(1.0);
        let path = tmp.path().join(format!("{}.toml", out.file_name().unwrap().to_string_lossy()));
        std::fs::write(&path, cfg.to_toml()).unwrap();
        path
    };
    let full_out = tmp.path().join("full");
    let status =
        Command::new(exe).args(["--quiet", "--config"]).arg(base(&full_out)).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());

    let killed_out = tmp.path().join("killed");
    let config = base(&killed_out);
    let mut child = Command::new(exe).args(["--quiet", "--config"]).arg(&config).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = std::fs::read_to_string(killed_out.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if done >= 23 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(!killed_out.join("final").exists(), "killed before the end");
    let status = Command::new(exe)
        .args(["--quiet", "--resume", "latest", "--config"])
        .arg(&config)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let a = losses(&full_out.join("metrics.jsonl"));
    let b = losses(&killed_out.join("metrics.jsonl"));
    assert_eq!(a.len(), 60);
    assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), b.iter().map(|x| x.0).collect::<Vec<_>>());
    let worst = a.iter().zip(&b).map(|(x, y)| (x.1 - y.1).abs()).fold(0.0, f64::max);
    eprintln!("resume: max |loss difference| over 60 steps = {worst:e}");
    assert!(worst <= 1e-5, "resumed curve differs by {worst}");
}

/// The batches (pixels, tokens, order, skips) do not depend on the number of workers.
#[test]
fn loader_is_deterministic_across_worker_counts() {
    use dermlip_trainer::augment::AugmentConfig;
    use dermlip_trainer::loader::{EpochLoader, LoaderConfig, Transform};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let ds = Arc::new(
        Dataset::from_csv(&CsvSpec {
            csv: data.join("Derm1M_v2_pretrain.csv"),
            images: vec![data.join("zips")],
            image_key: "filename".into(),
            caption_key: "truncated_caption".into(),
            label_key: None,
        })
        .unwrap(),
    );
    let tok = Arc::new(dermlip::input::tokenizer::TextTokenizer::Clip(
        dermlip::input::tokenizer::ClipTokenizer::new().unwrap().with_context_length(16).unwrap(),
    ));
    let run = |workers: usize, start: usize| {
        let cfg = LoaderConfig {
            batch_size: 48,
            workers,
            prefetch: 3,
            seed: 7,
            shuffle: true,
            drop_last: true,
            transform: Transform::Train(AugmentConfig::default()),
            preprocess: dermlip::input::preprocess::PreprocessConfig { size: 64, ..Default::default() },
            readers: Default::default(),
        };
        EpochLoader::new(Arc::clone(&ds), Arc::clone(&tok), &cfg, 3, start)
            .map(|b| (b.index, b.ids, b.pixels, b.tokens, b.skipped.len()))
            .collect::<Vec<_>>()
    };
    let one = run(1, 0);
    let four = run(4, 0);
    assert_eq!(one.len(), ds.len() / 48);
    assert!(one == four, "1 and 4 workers must give identical batches");
    assert_eq!(one.iter().map(|b| b.4).sum::<usize>() + one.iter().map(|b| b.1.len()).sum::<usize>(), one.len() * 48);
    // Starting mid-epoch (resume) yields the same tail.
    assert!(run(2, 3)[..] == one[3..]);
}

/// One AdamW step against the torch.optim.AdamW formulas (decoupled decay on the weight, none on
/// the bias), with global-norm clipping.
#[test]
fn adamw_matches_torch_formulas() {
    use burn::nn::{Linear, LinearConfig};
    use dermlip_trainer::optim::{AdamW, Grads, OptimConfig};
    let device = burn::tensor::Device::flex().autodiff();
    let layer: Linear = LinearConfig::new(3, 2).init(&device);
    let w0 = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let b0 = layer.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap();
    let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5, 0.3, 0.1, -1.0], [2, 3]), &device);
    let loss = layer.forward(x).powi_scalar(2).sum();
    let raw = loss.backward();
    let gw = layer.weight.val().grad(&raw).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let gb = layer.bias.as_ref().unwrap().val().grad(&raw).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let grads = Grads::from_backward(raw, &layer);
    let norm = gw.iter().chain(&gb).map(|g| (*g as f64).powi(2)).sum::<f64>().sqrt();
    assert!((grads.global_norm() - norm).abs() < 1e-4 * norm);
    let cfg = OptimConfig { lr: 0.01, weight_decay: 0.1, grad_clip_norm: Some(0.5), ..OptimConfig::default() };
    let mut opt = AdamW::new(cfg.clone());
    let (layer, reported) = opt.step(layer, grads, cfg.lr);
    assert!((reported - norm).abs() < 1e-4 * norm);
    let coef = (0.5 / (norm + 1e-6)).min(1.0);
    let expect = |p: f32, g: f32, wd: f64| {
        let (p, g) = (p as f64 * (1.0 - cfg.lr * wd), g as f64 * coef);
        let m = (1.0 - cfg.beta1) * g / (1.0 - cfg.beta1);
        let v = (1.0 - cfg.beta2) * g * g / (1.0 - cfg.beta2);
        p - cfg.lr * m / (v.sqrt() + cfg.eps)
    };
    let w1 = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
    let b1 = layer.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap();
    for i in 0..w0.len() {
        assert!((w1[i] as f64 - expect(w0[i], gw[i], 0.1)).abs() < 1e-6, "weight {i}");
    }
    for i in 0..b0.len() {
        assert!((b1[i] as f64 - expect(b0[i], gb[i], 0.0)).abs() < 1e-6, "bias {i}");
    }
    assert!(layer.weight.val().is_require_grad());
}

#[test]
fn config_toml_round_trips_and_refuses_unknown_keys() {
    let cfg = TrainConfig::default();
    assert_eq!(TrainConfig::from_toml(&cfg.to_toml()).unwrap(), cfg);
    let partial = TrainConfig::from_toml("epochs = 3\n[optim]\nlr = 5e-4\n").unwrap();
    assert_eq!((partial.epochs, partial.optim.lr, partial.optim.warmup), (3, 5e-4, 1000));
    assert!(TrainConfig::from_toml("epoch = 3\n").is_err());
    assert!(TrainConfig::from_toml("[optim]\nbeta = 0.9\n").is_err());
}

/// Data parallelism with gathered negatives: replicas on 2 (here: CPU) devices compute the same
/// global-batch loss and gradients as one device; gradient accumulation with cached features
/// (`accum_freq` 2) gives the same curve as the whole batch at once.
#[test]
fn data_parallel_and_accumulation_match_the_plain_step() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let curve = |devices: usize, accum: usize| {
        let out = tmp.path().join(format!("dp{devices}-{accum}"));
        let mut cfg = tiny_config(&data, &out);
        cfg.epochs = 1;
        cfg.max_steps = Some(6);
        cfg.accum_freq = accum;
        cfg.num_devices = devices;
        train_alone(&cfg);
        losses(&out.join("metrics.jsonl"))
    };
    let plain = curve(1, 1);
    assert_eq!(plain.len(), 6);
    for (devices, accum) in [(2, 1), (1, 2), (2, 2)] {
        let other = curve(devices, accum);
        let worst = plain.iter().zip(&other).map(|(a, b)| (a.1 - b.1).abs()).fold(0.0, f64::max);
        eprintln!("{devices} devices, accum {accum}: max |loss difference| vs 1 device, no accumulation = {worst:e}");
        assert!(worst < 1e-4, "{devices} devices, accum {accum}: {worst}");
    }
}

/// `--init` starts from open_clip weights (the config is found beside them) and fine-tunes them.
#[test]
fn fine_tunes_from_an_open_clip_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-gelu");
    let mut cfg = tiny_config(&data, &tmp.path().join("ft"));
    cfg.model.config = None;
    cfg.model.init = Some(fixture.join("open_clip_model.safetensors"));
    cfg.batch_size = Some(16);
    cfg.max_steps = Some(3);
    cfg.optim.lr = 1e-5;
    let out = train_alone(&cfg);
    assert_eq!(out.state.step, 3);
    assert_eq!(out.file_config.model.vision.image_size, 224);
    let init = StateDict::from_file(&fixture.join("open_clip_model.safetensors")).unwrap();
    let tuned = StateDict::from_file(&out.final_dir.join("open_clip_model.safetensors")).unwrap();
    assert_eq!(init.keys().collect::<Vec<_>>(), tuned.keys().collect::<Vec<_>>());
    let f = |sd: &StateDict, k: &str| {
        sd.get(k).unwrap().clone().convert_dtype(burn::tensor::DType::F32).try_to_vec::<f32>().unwrap()
    };
    let (a, b) = (f(&init, "visual.proj"), f(&tuned, "visual.proj"));
    let moved = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(moved > 0.0 && moved < 1e-3, "3 steps at lr 1e-5 move weights a little: {moved}");
    let (s0, s1) = (f(&init, "logit_scale")[0], f(&tuned, "logit_scale")[0]);
    assert!((s0 - s1).abs() < 1e-3, "{s0} -> {s1}");
}

/// The shipped example configs parse (and keep parsing as fields change).
#[test]
fn example_configs_parse() {
    for (name, batch) in
        [("derm1m-vit-b-16.toml", 4096), ("derm1m-panderm-base-w-pubmed-256.toml", 2048), ("synthetic-tiny.toml", 32)]
    {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name);
        let cfg =
            TrainConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cfg.batch_size, Some(batch), "{name}");
        assert!(batch % cfg.accum_freq == 0, "{name}");
    }
}

/// The two Derm1M configs say what the Derm1M scripts say (shared/docs/dermlip-reference.md §3:
/// script/pretrain/ViT-B-16.sh and PanDerm-base-w-PubMed-256.sh, open_clip's defaults for the
/// flags they leave out): lr 1e-4, warmup 1000, wd 0.1, 30 epochs, seed 0, 32 workers, AdamW
/// betas/eps by model name, no clipping, the augmentation, `--precision amp` (open_clip's
/// default) and `--grad-checkpointing`.
#[test]
fn derm1m_configs_follow_the_scripts() {
    for (name, betas) in
        [("derm1m-vit-b-16.toml", (0.9, 0.98, 1e-6)), ("derm1m-panderm-base-w-pubmed-256.toml", (0.9, 0.999, 1e-8))]
    {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs").join(name);
        let cfg = TrainConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let o = &cfg.optim;
        assert_eq!((o.lr, o.warmup, o.weight_decay, o.grad_clip_norm), (1e-4, 1000, 0.1, None), "{name}");
        assert_eq!((o.beta1, o.beta2, o.eps), betas, "{name}");
        assert_eq!((cfg.epochs, cfg.seed, cfg.data.workers), (30, 0, 32), "{name}");
        assert_eq!((cfg.data.caption_key.as_str(), cfg.data.image_key.as_str()), ("truncated_caption", "filename"));
        let a = &cfg.augment;
        assert_eq!((a.scale, a.color_jitter), ((0.4, 1.0), (0.32, 0.32, 0.32, 0.08)), "{name}");
        assert_eq!((a.color_jitter_prob, a.gray_scale_prob), (0.8, 0.2), "{name}");
        assert_eq!(cfg.precision, "amp", "{name}: open_clip's default --precision");
        assert!(cfg.grad_checkpointing, "{name}: the script passes --grad-checkpointing");
        assert_eq!(
            (cfg.checkpoint_every, cfg.eval_every),
            (0, 0),
            "{name}: --save-frequency 1, --zeroshot-frequency 1"
        );
    }
}

fn panderm_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-panderm")
}

fn floats(sd: &StateDict, k: &str) -> Vec<f32> {
    sd.get(k).unwrap().clone().convert_dtype(burn::tensor::DType::F32).try_to_vec::<f32>().unwrap()
}

/// The second architecture, DermLIP-PanDerm's `CustomTextCLIP` (PanDerm ViT + BERT): `--init` of
/// the tiny-panderm checkpoint folder fine-tunes on the synthetic mini-Derm1M with the BERT's own
/// WordPiece tokenizer (context 256, `[PAD]` = 0 masked in the training forward exactly as at
/// inference); the loss drops clearly, the fixed sin-cos `pos_embed` is not trained, the decay
/// groups are open_clip's, and the exported folder re-loads through `DermLip::load` to
/// bit-identical embeddings.
#[test]
fn fine_tunes_panderm_bert_checkpoint() {
    use dermlip::DermLip;
    use dermlip_trainer::optim::decay_groups;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let fixture = panderm_checkpoint_with_context(&tmp.path().join("tiny-panderm"), PANDERM_CONTEXT);
    let mut cfg = tiny_config(&data, &tmp.path().join("panderm"));
    cfg.model.config = None;
    cfg.model.init = Some(fixture.clone());
    cfg.optim.lr = PANDERM_LR;
    cfg.epochs = PANDERM_EPOCHS;
    cfg.export_web_bundle = true;
    let started = Instant::now();
    let out = train_alone(&cfg);
    let secs = started.elapsed().as_secs_f64();
    let curve = losses(&cfg.output.join("metrics.jsonl"));
    let (first, last) = (mean(&curve[..10]), mean(&curve[curve.len() - 10..]));
    eprintln!(
        "tiny-panderm fine-tune: {} steps in {secs:.1} s; loss (mean of 10 steps) {first:.3} -> {last:.3}",
        curve.len()
    );
    assert_eq!(curve.len(), PANDERM_EPOCHS * 12);
    assert!(curve.iter().all(|(_, l)| l.is_finite()));
    assert!(last < 0.75 * first, "loss did not drop clearly: {first} -> {last}");
    let mcfg = &out.file_config.model;
    assert_eq!(mcfg.text.context_length, PANDERM_CONTEXT);
    assert!(matches!(mcfg.text.arch, dermlip::config::TextArch::Bert(_)));

    // Decay groups: open_clip's rule over the trainable parameters; pos_embed is not among them.
    let groups = decay_groups(&out.model);
    let decay = |suffix: &str| {
        let hits: Vec<bool> = groups.iter().filter(|(p, _)| p.ends_with(suffix)).map(|(_, d)| *d).collect();
        assert!(!hits.is_empty(), "no trainable parameter ends with {suffix}: {groups:?}");
        hits
    };
    assert!(!groups.iter().any(|(p, _)| p.contains("pos_embed")), "pos_embed must not be trainable");
    for frozen_decay in
        ["gamma_1", "gamma_2", "q_bias", "v_bias", "norm1.gamma", "norm.beta", "head.bias", "logit_scale"]
    {
        assert!(decay(frozen_decay).iter().all(|d| !d), "{frozen_decay} must not be decayed");
    }
    for name in ["embeddings_norm.gamma", "attention_norm.gamma", "attention.query.bias", "intermediate.bias"] {
        assert!(decay(name).iter().all(|d| !d), "{name} must not be decayed");
    }
    for decayed in ["cls_token", "qkv.weight", "fc2.weight", "head.weight", "patch_embed.weight", "word_embeddings"] {
        assert!(decay(decayed).iter().all(|d| *d), "{decayed} must be decayed");
    }
    assert!(decay("position_embeddings").iter().all(|d| *d) && decay("proj_in.weight").iter().all(|d| *d));

    // pos_embed unchanged, trained weights moved.
    let init = StateDict::from_file(&panderm_fixture().join("open_clip_model.safetensors")).unwrap();
    let tuned = StateDict::from_file(&out.final_dir.join("open_clip_model.safetensors")).unwrap();
    assert_eq!(floats(&init, "visual.pos_embed"), floats(&tuned, "visual.pos_embed"), "pos_embed was trained");
    for k in ["visual.blocks.0.attn.qkv.weight", "visual.blocks.1.gamma_2", "text.proj.2.weight"] {
        let moved = floats(&init, k).iter().zip(floats(&tuned, k)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(moved > 1e-4, "{k} did not train: {moved}");
    }
    let moved_words = floats(&init, "text.transformer.embeddings.word_embeddings.weight")
        .iter()
        .zip(floats(&tuned, "text.transformer.embeddings.word_embeddings.weight"))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(moved_words > 1e-4, "word embeddings did not train: {moved_words}");

    // The export folder (safetensors, open_clip_config.json, config.json, tokenizer.json) loads
    // like a hub checkpoint; its embeddings equal the trained model's training forward.
    for f in ["open_clip_config.json", "config.json", "tokenizer.json"] {
        assert!(out.final_dir.join(f).is_file(), "{f}");
    }
    assert!(cfg.output.join("web-bundle/manifest.json").is_file());
    let device = burn::tensor::Device::flex();
    let reloaded = DermLip::load(&out.final_dir, device.clone()).unwrap();
    assert_eq!(&reloaded.config, mcfg);
    let texts = ["a large red circle lesion on plain skin", "a small blue cross lesion on dotted skin"];
    let ids = reloaded.token_ids(&texts).unwrap();
    let train_tok = dermlip_trainer::train::text_tokenizer(mcfg).unwrap();
    assert_eq!(ids, train_tok.encode_batch(&texts).unwrap(), "training and inference tokenise alike");
    assert_eq!(ids[0][0], 2, "[CLS] first");
    let ctx = PANDERM_CONTEXT;
    assert!(ids[0].len() == ctx && ids[0][ctx - 1] == 0, "padded with [PAD] = 0 to the context length");
    let flat: Vec<i32> = ids.iter().flatten().map(|&x| x as i32).collect();
    let size = mcfg.vision.image_size;
    let px: Vec<f32> = (0..3 * size * size).map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0).collect();
    let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
    let (want_txt, want_img) = (vec(reloaded.encode_ids(&ids)), vec(reloaded.encode_pixels(&[px.clone()])));
    // The trained weights (inference copy) against the re-loaded export: bit-identical.
    let trained = burn::module::Module::valid(&out.model);
    let txt = |d: &burn::tensor::Device| Tensor::<2, Int>::from_data(TensorData::new(flat.clone(), [2, ctx]), d);
    let img = |d: &burn::tensor::Device| Tensor::<4>::from_data(TensorData::new(px.clone(), [1, 3, size, size]), d);
    assert_eq!(vec(trained.encode_text(txt(&device))), want_txt);
    assert_eq!(vec(trained.encode_image(img(&device))), want_img);
    // The training forward itself (autodiff graph, same mask from the ids) agrees with inference
    // up to the float rounding of Burn's autodiff attention path.
    let ad = out.model.logit_scale.val().device();
    let worst = |a: Vec<f32>, b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let (dt, di) = (
        worst(vec(out.model.encode_text(txt(&ad))), &want_txt),
        worst(vec(out.model.encode_image(img(&ad))), &want_img),
    );
    eprintln!("training forward vs inference: max |difference| text {dt:e}, image {di:e}");
    assert!(dt < 1e-5 && di < 1e-5, "text {dt}, image {di}");
}

/// Synthetic epochs of 12 batches for the PanDerm fine-tune (kept short for CI).
const PANDERM_EPOCHS: usize = 16;
const PANDERM_LR: f64 = 2e-3;
/// The synthetic captions are ≤ 40 WordPiece tokens with the tiny vocabulary (letters and a few
/// words): the test's copy of tiny-panderm uses context 64 instead of 256 (4× less text compute;
/// the weights are the same: BERT positions are a table of 300 rows either way).
const PANDERM_CONTEXT: usize = 64;

/// A copy of the tiny-panderm checkpoint folder with `text_cfg.context_length` set to `ctx`.
fn panderm_checkpoint_with_context(dir: &Path, ctx: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["open_clip_model.safetensors", "config.json", "tokenizer.json"] {
        std::fs::copy(panderm_fixture().join(f), dir.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(panderm_fixture().join("open_clip_config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["model_cfg"]["text_cfg"]["context_length"] = ctx.into();
    std::fs::write(dir.join("open_clip_config.json"), cfg.to_string()).unwrap();
    dir.to_path_buf()
}

/// From scratch: open_clip-like init of a PanDerm + BERT config (fork/HF init rules), a few steps
/// train and the result exports and re-loads.
#[test]
fn panderm_bert_from_scratch() {
    use dermlip::ModelFileConfig;
    let mcfg = ModelFileConfig::from_config_file(&panderm_fixture().join("open_clip_config.json")).unwrap();
    let device = burn::tensor::Device::flex();
    let model = {
        let _turn = crate::rng_turn();
        let model = Clip::new(&mcfg.model, &device).init_parameters();
        dermlip_trainer::step::materialize(&model);
        model
    };
    let sd = dermlip::checkpoint::export::clip_state_dict(&model).unwrap();
    let all_zero = |k: &str| floats(&sd, k).iter().all(|&x| x == 0.0);
    for k in [
        "visual.head.bias",
        "visual.blocks.1.attn.proj.bias",
        "visual.blocks.0.mlp.fc1.bias",
        "visual.blocks.0.attn.q_bias",
    ] {
        assert!(all_zero(k), "{k} starts at zero");
    }
    for k in [
        "text.transformer.encoder.layer.0.attention.self.query.bias",
        "text.transformer.encoder.layer.1.output.dense.bias",
    ] {
        assert!(all_zero(k), "{k} starts at zero");
    }
    let words = floats(&sd, "text.transformer.embeddings.word_embeddings.weight");
    assert!(words[..64].iter().all(|&x| x == 0.0), "the [PAD] row starts at zero");
    let std = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((std(&words[64..]) - 0.02).abs() < 0.002, "word embeddings std {}", std(&words[64..]));
    let (p0, p1) = (floats(&sd, "visual.blocks.0.attn.proj.weight"), floats(&sd, "visual.blocks.1.attn.proj.weight"));
    assert!((std(&p0) - 0.02 / 2f32.sqrt()).abs() < 0.002 && (std(&p1) - 0.01).abs() < 0.001, "fix_init_weight");
    let proj = floats(&sd, "text.proj.0.weight");
    assert!(proj.iter().all(|x| x.abs() <= 1.0 / 8.0) && std(&proj) > 0.05, "nn.Linear default init of proj");
    let gamma = floats(&sd, "visual.blocks.0.gamma_1");
    assert!(gamma.iter().all(|&g| (g - 0.1).abs() < 1e-7));
    assert_eq!(
        floats(&sd, "visual.pos_embed"),
        dermlip::model::panderm::sincos_position_table(mcfg.model.vision.grid_size(), mcfg.model.vision.width)
    );

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data);
    let mut cfg = tiny_config(&data, &tmp.path().join("scratch"));
    cfg.model.config = Some(panderm_fixture().join("open_clip_config.json"));
    cfg.max_steps = Some(4);
    let out = train_alone(&cfg);
    assert_eq!(out.state.step, 4);
    let curve = losses(&cfg.output.join("metrics.jsonl"));
    assert!(curve.iter().all(|(_, l)| l.is_finite()), "{curve:?}");
    let reloaded = dermlip::DermLip::load(&out.final_dir, device).unwrap();
    let tuned = StateDict::from_file(&out.final_dir.join("open_clip_model.safetensors")).unwrap();
    assert_eq!(
        floats(&tuned, "visual.pos_embed"),
        dermlip::model::panderm::sincos_position_table(mcfg.model.vision.grid_size(), mcfg.model.vision.width)
    );
    assert!(reloaded.towers.has_text());
}
