//! The training loop on the shared `dermlip::Clip` graph.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use dermlip::config::{Activation, ModelFileConfig, TextArch};
use dermlip::export::{checkpoint_config_files, clip_state_dict, save_open_clip, write_atomic};
use dermlip::pipeline::{text_pad_id, trim_text_padding};
use dermlip::preprocess::PreprocessConfig;
use dermlip::tokenizer::{ClipTokenizer, TextTokenizer, VOCAB_SIZE};
use dermlip::weights::StateDict;
use dermlip::wordpiece::{TokenizerFile, WordPieceTokenizer};
use dermlip::{Clip, ClipConfig};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::data::{CsvSpec, Dataset};
use crate::evaluate::{evaluate, EvalReport};
use crate::loader::{num_batches, EpochLoader, LoaderConfig, Transform};
use crate::loss::clip_loss;
use crate::optim::{cosine_lr, AdamW, Grads};

pub type Result<T> = std::result::Result<T, String>;

/// Where a run stands; saved in each checkpoint as `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: usize,
    /// Next batch to train on: epoch and batch index within it.
    pub epoch: usize,
    pub batch: usize,
    pub samples_seen: u64,
    pub skipped_this_epoch: usize,
    pub skipped_total: usize,
}

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
            .map(|d| d.join("open_clip_config.json"))
            .filter(|p| p.is_file())
    });
    match path {
        Some(p) => read_model_config(&p),
        None => {
            let act = if cfg.model.quick_gelu { Activation::QuickGelu } else { Activation::Gelu };
            Ok(ModelFileConfig { model: ClipConfig::vit_b_16(act), preprocess: PreprocessConfig::default() })
        }
    }
}

/// An `open_clip_config.json` (any file name) and, for a BERT text tower, the `config.json` and
/// tokenizer file beside it.
pub fn read_model_config(path: &Path) -> Result<ModelFileConfig> {
    let shown = path.display();
    let text = fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let text_model = if text.contains("\"hf_model_name\"") {
        let p = dir.join("config.json");
        p.is_file().then(|| fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))).transpose()?
    } else {
        None
    };
    let file_cfg =
        ModelFileConfig::from_json_strs(&text, text_model.as_deref()).map_err(|e| format!("{shown}: {e}"))?;
    if !matches!(file_cfg.model.text.arch, TextArch::Bert(_)) {
        return Ok(file_cfg);
    }
    for name in TokenizerFile::FILE_NAMES {
        let p = dir.join(name);
        if p.is_file() {
            let bytes = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let file = TokenizerFile::from_named_bytes(name, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            return Ok(file_cfg.with_tokenizer(file));
        }
    }
    Err(format!("{shown}: the BERT text tower needs its tokenizer (tokenizer.json or vocab.txt) in {}", dir.display()))
}

/// open_clip's random initialisation, per tower:
/// - open_clip ViT / CLIP text: `CLIP.init_parameters` for the text tower, `nn.MultiheadAttention`'s
///   xavier in_proj and zero attention biases in both towers;
/// - PanDerm (the fork's CAE `VisionTransformer`): `trunc_normal_(std=.02)` linear weights (drawn
///   normal: the ±2 truncation is at 100σ), zero linear biases, `fix_init_weight` (`attn.proj` and
///   `mlp.fc2` of block i divided by √(2(i+1))), head ×0.001 (bias 0), layer scale 0.1, fixed
///   sin-cos `pos_embed`;
/// - BERT (`HFTextEncoder` built from its config, as the fork does without pretrained text
///   weights): Hugging Face `_init_weights` (normal 0.02 weights and embeddings, the `[PAD]` row
///   of the word embeddings zero, zero biases), and PyTorch's default `nn.Linear` init for the
///   `proj` layers (`U(±1/√fan_in)`).
///
/// Everything else (MLP, LayerNorm, embeddings, projections, the patch conv) already matches in
/// `Clip::new`.
pub fn open_clip_init(model: Clip, cfg: &ClipConfig) -> Clip {
    enum Init {
        Zeros,
        Random(Distribution),
        /// Normal(0, std) with row `pad` zero (`nn.Embedding(padding_idx)` as HF initialises it).
        PaddedEmbedding(f64, usize),
    }
    struct Mapper {
        path: Vec<String>,
        text_width: usize,
        text_layers: usize,
        pad: usize,
    }
    /// The block index after `blocks.` in a PanDerm path.
    fn block_index(path: &str) -> Option<usize> {
        path.split("blocks.").nth(1)?.split('.').next()?.parse().ok()
    }
    impl Mapper {
        fn choose(&self, path: &str, dims: &[usize]) -> Option<Init> {
            if path.starts_with("visual.PanDerm.") {
                let is_linear_bias = path.ends_with(".bias") && !path.contains("patch_embed") && !path.contains("norm");
                if is_linear_bias {
                    return Some(Init::Zeros);
                }
                if path.ends_with("attn.proj.weight") || path.ends_with("fc2.weight") {
                    let layer = block_index(path)? as f64 + 1.0;
                    return Some(Init::Random(Distribution::Normal(0.0, 0.02 / (2.0 * layer).sqrt())));
                }
                return None;
            }
            if path.starts_with("text.Bert.") {
                if path.ends_with(".bias") && !path.contains("norm") {
                    return Some(Init::Zeros);
                }
                if path.ends_with("word_embeddings") {
                    return Some(Init::PaddedEmbedding(0.02, self.pad));
                }
                if path.contains("proj_in.") || path.contains("proj_out.") {
                    let a = 1.0 / (dims[0] as f64).sqrt(); // Burn [in, out]: fan_in first
                    return Some(Init::Random(Distribution::Uniform(-a, a)));
                }
                return None;
            }
            let text = path.starts_with("text.");
            let w = self.text_width as f64;
            let attn_std = w.powf(-0.5);
            let proj_std = w.powf(-0.5) * (2.0 * self.text_layers as f64).powf(-0.5);
            let fc_std = (2.0 * w).powf(-0.5);
            if path.ends_with("attn.in_proj.bias") || path.ends_with("attn.out_proj.bias") {
                Some(Init::Zeros)
            } else if text && path.ends_with("attn.in_proj.weight") {
                Some(Init::Random(Distribution::Normal(0.0, attn_std)))
            } else if path.ends_with("attn.in_proj.weight") {
                let (fan_in, fan_out) = (dims[0] as f64, dims[dims.len() - 1] as f64 / 3.0);
                // torch xavier_uniform_ on the [3d, d] matrix: fans d and 3d.
                let a = (6.0 / (fan_in + 3.0 * fan_out)).sqrt();
                Some(Init::Random(Distribution::Uniform(-a, a)))
            } else if text && (path.ends_with("attn.out_proj.weight") || path.ends_with("mlp.c_proj.weight")) {
                Some(Init::Random(Distribution::Normal(0.0, proj_std)))
            } else if text && path.ends_with("mlp.c_fc.weight") {
                Some(Init::Random(Distribution::Normal(0.0, fc_std)))
            } else {
                None
            }
        }
    }
    impl ModuleMapper for Mapper {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = self.path.join(".");
            let shape = param.lazy_shape();
            let dims = shape.dims::<D>();
            let Some(init) = self.choose(&path, &dims) else { return param };
            let device = param.lazy_device();
            let (id, _, mapper) = param.consume();
            let t = match init {
                Init::Zeros => Tensor::<D>::zeros(shape, &device),
                Init::Random(d) => Tensor::<D>::random(shape, d, &device),
                Init::PaddedEmbedding(std, pad) => {
                    let t = Tensor::<D>::random(shape, Distribution::Normal(0.0, std), &device);
                    let mut row = dims;
                    row[0] = 1;
                    let mut ranges: [std::ops::Range<usize>; D] = std::array::from_fn(|i| 0..dims[i]);
                    ranges[0] = pad..pad + 1;
                    t.slice_assign(ranges, Tensor::<D>::zeros(row, &device))
                }
            };
            let t = if t.is_autodiff() { t.require_grad() } else { t };
            Param::from_mapped_value(id, t, mapper)
        }
    }
    let pad = match &cfg.text.arch {
        TextArch::Bert(b) => b.pad_token_id as usize,
        TextArch::Clip => 0,
    };
    model.map(&mut Mapper { path: Vec::new(), text_width: cfg.text.width, text_layers: cfg.text.layers, pad })
}

/// The model's own tokenizer, as inference builds it (`DermLip`): CLIP BPE, or the BERT
/// WordPiece of the checkpoint (`[CLS] … [SEP]`, `[PAD]` = the BERT's `pad_token_id`, which its
/// forward pass masks out), `context_length` from the config.
pub fn text_tokenizer(cfg: &ClipConfig) -> Result<TextTokenizer> {
    let ctx = cfg.text.context_length;
    match &cfg.text.arch {
        TextArch::Clip => {
            if cfg.text.vocab_size != VOCAB_SIZE {
                return Err(format!(
                    "text_cfg.vocab_size is {}, but the CLIP BPE tokenizer has {VOCAB_SIZE} tokens",
                    cfg.text.vocab_size
                ));
            }
            let t =
                ClipTokenizer::new().and_then(|t| t.with_context_length(ctx)).map_err(|e| format!("tokenizer: {e}"))?;
            Ok(TextTokenizer::Clip(t))
        }
        TextArch::Bert(b) => {
            let file = b
                .tokenizer
                .as_ref()
                .ok_or("the BERT text tower has no tokenizer file (tokenizer.json or vocab.txt)")?;
            let t = WordPieceTokenizer::new(file, ctx).map_err(|e| format!("tokenizer: {e}"))?;
            if t.vocab_size() > cfg.text.vocab_size {
                return Err(format!(
                    "the tokenizer has {} tokens but the BERT text tower only {}",
                    t.vocab_size(),
                    cfg.text.vocab_size
                ));
            }
            if t.pad_id() != b.pad_token_id {
                return Err(format!(
                    "the tokenizer pads with id {} but the BERT text tower masks id {}",
                    t.pad_id(),
                    b.pad_token_id
                ));
            }
            Ok(TextTokenizer::WordPiece(t))
        }
    }
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

fn checkpoint_dirs(root: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse::<usize>().ok()?;
            e.path().join("state.json").is_file().then_some((step, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// The newest complete checkpoint under `output/checkpoints`.
pub fn latest_checkpoint(output: &Path) -> Option<PathBuf> {
    checkpoint_dirs(&output.join("checkpoints")).pop().map(|(_, p)| p)
}

fn save_checkpoint(
    cfg: &TrainConfig,
    file_cfg: &ModelFileConfig,
    model: &Clip,
    optim: &AdamW,
    state: &TrainState,
) -> Result<PathBuf> {
    let root = cfg.output.join("checkpoints");
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let final_dir = root.join(format!("step-{:08}", state.step));
    let tmp = root.join(format!(".step-{:08}.tmp", state.step));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let w = |name: &str, bytes: &[u8]| write_atomic(&tmp.join(name), bytes).map_err(|e| format!("{name}: {e}"));
    let model_bytes = clip_state_dict(model).and_then(|sd| sd.to_safetensors_bytes()).map_err(|e| e.to_string())?;
    w("open_clip_model.safetensors", &model_bytes)?;
    // open_clip_config.json (+ a BERT's config.json and tokenizer): the folder loads like a hub one.
    for (name, bytes) in checkpoint_config_files(file_cfg).map_err(|e| e.to_string())? {
        w(name, &bytes)?;
    }
    let opt_bytes = StateDict::from_tensors(optim.state_tensors()).to_safetensors_bytes();
    // An optimiser with no state yet (step 0) has no tensors: write an empty marker instead.
    match opt_bytes {
        Ok(b) if optim.step > 0 => w("optimizer.safetensors", &b)?,
        _ => {}
    }
    #[derive(Serialize)]
    struct Saved<'a> {
        state: &'a TrainState,
        optimizer_step: u64,
    }
    w("state.json", serde_json::to_string_pretty(&Saved { state, optimizer_step: optim.step }).unwrap().as_bytes())?;
    w("train_config.toml", cfg.to_toml().as_bytes())?;
    let _ = fs::remove_dir_all(&final_dir);
    fs::rename(&tmp, &final_dir).map_err(|e| format!("{}: {e}", final_dir.display()))?;
    let dirs = checkpoint_dirs(&root);
    if cfg.keep_last > 0 && dirs.len() > cfg.keep_last {
        for (_, old) in &dirs[..dirs.len() - cfg.keep_last] {
            let _ = fs::remove_dir_all(old);
        }
    }
    Ok(final_dir)
}

fn load_checkpoint(
    dir: &Path,
    file_cfg: &ModelFileConfig,
    optim: &mut AdamW,
    device: &Device,
) -> Result<(Clip, TrainState)> {
    let sd = StateDict::from_file(&dir.join("open_clip_model.safetensors")).map_err(|e| e.to_string())?;
    let model = Clip::from_state_dict(&file_cfg.model, sd, device).map_err(|e| e.to_string())?;
    #[derive(Deserialize)]
    struct Saved {
        state: TrainState,
        optimizer_step: u64,
    }
    let text = fs::read_to_string(dir.join("state.json")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let saved: Saved = serde_json::from_str(&text).map_err(|e| format!("state.json: {e}"))?;
    let opt_path = dir.join("optimizer.safetensors");
    let tensors = if opt_path.is_file() {
        let bytes = fs::read(&opt_path).map_err(|e| format!("{}: {e}", opt_path.display()))?;
        let sd = StateDict::from_safetensors_bytes(bytes).map_err(|e| e.to_string())?;
        let keys: Vec<String> = sd.keys().cloned().collect();
        let mut sd = sd;
        keys.into_iter().filter_map(|k| sd.remove(&k).map(|d| (k, d))).collect()
    } else {
        BTreeMap::new()
    };
    optim.load_state_tensors(tensors, saved.optimizer_step, device);
    Ok((model, saved.state))
}

/// Splits a loaded batch into `k` micro-batches and returns the summed gradients of the
/// global-batch loss (open_clip `--accum-freq`: features of the other micro-batches are computed
/// without gradient and reused as negatives), and the loss value.
///
/// Data parallelism: `models[d]` is a replica on `devices[d]` (`models[0]` is the trained model).
/// Each micro-batch is sharded over the replicas; their embeddings are moved to `devices[0]` and
/// concatenated, so one loss sees the **gathered** global batch as negatives, and one backward
/// pass reaches every replica. Their gradients (same `ParamId`s) are summed on `devices[0]`.
#[allow(clippy::too_many_arguments)]
fn batch_gradients(
    models: &[Clip],
    devices: &[Device],
    pixels: &[f32],
    tokens: &[i32],
    n: usize,
    size: usize,
    ctx: usize,
    k: usize,
) -> (Grads, f64) {
    let main = &devices[0];
    let main_inner = main.clone().inner();
    let nd = models.len();
    let k = k.clamp(1, n.max(1));
    let per_img = 3 * size * size;
    let bounds: Vec<(usize, usize)> = (0..k).map(|j| (j * n / k, (j + 1) * n / k)).collect();
    let inputs = |(a, b): (usize, usize), device: &Device| {
        let img = Tensor::<4>::from_data(
            TensorData::new(pixels[a * per_img..b * per_img].to_vec(), [b - a, 3, size, size]),
            device,
        );
        let ids = Tensor::<2, Int>::from_data(TensorData::new(tokens[a * ctx..b * ctx].to_vec(), [b - a, ctx]), device);
        (img, ids)
    };
    let shards = |(a, b): (usize, usize)| -> Vec<(usize, (usize, usize))> {
        let m = b - a;
        (0..nd).map(|d| (d, (a + d * m / nd, a + (d + 1) * m / nd))).filter(|(_, (x, y))| y > x).collect()
    };
    let collect = |mut g: burn::tensor::Gradients| -> Grads {
        let mut out = Grads::from_gradients(&mut g, &models[0]);
        for replica in &models[1..] {
            out.add(Grads::from_gradients(&mut g, replica).to_device(&main_inner));
        }
        out
    };
    // The live (with gradient) embeddings of rows a..b, gathered on the main device.
    let live = |bd: (usize, usize)| -> (Tensor<2>, Tensor<2>) {
        let (mut is, mut ts) = (Vec::new(), Vec::new());
        for (d, sh) in shards(bd) {
            let (img, ids) = inputs(sh, &devices[d]);
            is.push(models[d].encode_image(img).to_device(main));
            ts.push(models[d].encode_text(ids).to_device(main));
        }
        (Tensor::cat(is, 0), Tensor::cat(ts, 0))
    };
    if k == 1 {
        let (img, txt) = live(bounds[0]);
        let loss = clip_loss(img, txt, models[0].logit_scale.val());
        let value = loss.clone().into_scalar::<f32>() as f64;
        return (collect(loss.backward()), value);
    }
    // Pass 1: every micro-batch's features, without gradient.
    let frozen: Vec<Clip> = models.iter().map(|m| m.valid()).collect();
    let cached: Vec<(Tensor<2>, Tensor<2>)> = bounds
        .iter()
        .map(|&bd| {
            let (mut is, mut ts) = (Vec::new(), Vec::new());
            for (d, sh) in shards(bd) {
                let inner = devices[d].clone().inner();
                let (img, ids) = inputs(sh, &inner);
                is.push(frozen[d].encode_image(img).to_device(&main_inner));
                ts.push(frozen[d].encode_text(ids).to_device(&main_inner));
            }
            (Tensor::cat(is, 0), Tensor::cat(ts, 0))
        })
        .collect();
    // Pass 2: one micro-batch live at a time, against all the others' cached features.
    let mut acc = Grads::default();
    let mut value = 0.0;
    for (j, &bd) in bounds.iter().enumerate() {
        let (live_img, live_txt) = live(bd);
        let mut imgs = Vec::with_capacity(k);
        let mut txts = Vec::with_capacity(k);
        for (i, (ci, ct)) in cached.iter().enumerate() {
            if i == j {
                imgs.push(live_img.clone());
                txts.push(live_txt.clone());
            } else {
                imgs.push(Tensor::from_inner(ci.clone()));
                txts.push(Tensor::from_inner(ct.clone()));
            }
        }
        // Same value; gradient 1/k per pass so logit_scale's summed gradient is the global loss's
        // (open_clip lets it accumulate k times).
        let s = models[0].logit_scale.val();
        let s = s.clone().detach() + (s.clone() - s.detach()) / k as f64;
        let loss = clip_loss(Tensor::cat(imgs, 0), Tensor::cat(txts, 0), s);
        value = loss.clone().into_scalar::<f32>() as f64;
        acc.add(collect(loss.backward()));
    }
    (acc, value)
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

/// Forces every lazily initialised parameter, so replicas forked from the model share its values.
fn materialize(model: &Clip) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

fn clamp_logit_scale(mut model: Clip) -> Clip {
    let max = 100f64.ln();
    model.logit_scale = model.logit_scale.map(|t| Tensor::from_inner(t.inner().clamp(0.0, max)).require_grad());
    model
}

pub fn logit_scale_value(model: &Clip) -> f64 {
    model.logit_scale.val().into_scalar::<f32>() as f64
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

/// Runs (or resumes) training as configured.
pub fn train(cfg: &TrainConfig, resume: Option<&Path>, quiet: bool) -> Result<Outcome> {
    let file_cfg = model_file_config(cfg)?;
    let mcfg = &file_cfg.model;
    let all_devices = pick_devices(&cfg.device, cfg.num_devices)?;
    let base_device = all_devices[0].clone();
    let device = base_device.clone().autodiff();
    let devices: Vec<Device> = all_devices.iter().map(|d| d.clone().autodiff()).collect();
    let log = |s: String| {
        if !quiet {
            eprintln!("{s}");
        }
    };
    fs::create_dir_all(&cfg.output).map_err(|e| format!("{}: {e}", cfg.output.display()))?;
    write_atomic(&cfg.output.join("train_config.toml"), cfg.to_toml().as_bytes()).map_err(|e| e.to_string())?;
    log(format!("# trainer config\n{}", cfg.to_toml()));

    let train_ds = load_dataset(&cfg.data.train_csv, &cfg.data.train_images, &cfg.data.train_shards, cfg, false)?
        .ok_or("no training data: set data.train_csv or data.train_shards")?;
    let r = &train_ds.report;
    log(format!(
        "train: {} samples ({} rows; left out: {} bad rows, {} missing images, {} incomplete samples, {} truncated shards)",
        train_ds.len(), r.rows, r.bad_rows, r.missing_images, r.incomplete_samples, r.truncated_shards
    ));
    for e in &r.examples {
        log(format!("  {e}"));
    }
    let val_ds = load_dataset(&cfg.data.val_csv, &cfg.data.val_images, &cfg.data.val_shards, cfg, true)?;
    if let Some(v) = &val_ds {
        log(format!("validation: {} samples ({} problems left out)", v.len(), v.report.problems()));
    }
    let train_ds = Arc::new(train_ds);
    let val_ds = val_ds.map(Arc::new);
    let tokenizer = Arc::new(text_tokenizer(mcfg)?);
    let size = file_cfg.preprocess.size as usize;
    if size != mcfg.vision.image_size {
        return Err(format!("preprocess size {size} differs from the model's image_size {}", mcfg.vision.image_size));
    }
    let pad = text_pad_id(&mcfg.text.arch) as i32;
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
    let (mut model, mut state) = match resume {
        Some(dir) => {
            let (m, s) = load_checkpoint(dir, &file_cfg, &mut optim, &device)?;
            log(format!("resumed from {} at step {} (epoch {}, batch {})", dir.display(), s.step, s.epoch, s.batch));
            (m, s)
        }
        None => {
            device.seed(cfg.seed);
            let m = match &cfg.model.init {
                Some(p) => {
                    // A checkpoint folder or a weights file.
                    let (_, weights) = dermlip::pipeline::locate_checkpoint(p).map_err(|e| e.to_string())?;
                    let sd = StateDict::from_file(&weights).map_err(|e| e.to_string())?;
                    Clip::from_state_dict(mcfg, sd, &device).map_err(|e| e.to_string())?
                }
                None => open_clip_init(Clip::new(mcfg, &device), mcfg),
            };
            (m, TrainState::default())
        }
    };
    // Initialise every lazy parameter now, in module order: a `valid()` copy (accumulation's
    // pass 1) or a replica must see the same values, and the init must not depend on use order.
    materialize(&model);
    if devices.len() > 1 {
        log(format!("data parallel over {} devices, negatives gathered over the global batch", devices.len()));
    }
    let metrics_path = cfg.output.join("metrics.jsonl");
    if resume.is_some() {
        truncate_metrics(&metrics_path, state.step);
    } else {
        let _ = fs::remove_file(&metrics_path);
    }
    let mut metrics = OpenOptions::new().create(true).append(true).open(&metrics_path).map_err(|e| e.to_string())?;
    let mut write_metric = |v: serde_json::Value| {
        let _ = writeln!(metrics, "{v}");
        let _ = metrics.flush();
    };

    let progress = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let pb = indicatif::ProgressBar::new(total_steps as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]").unwrap(),
        );
        pb
    };
    progress.set_position(state.step as u64);
    let mut first_loss = None;
    let mut last_loss = None;
    let mut evals = Vec::new();
    let max_steps = cfg.max_steps.unwrap_or(usize::MAX);
    let started = Instant::now();
    let do_eval = |model: &Clip,
                   step: usize,
                   evals: &mut Vec<(usize, EvalReport)>,
                   write: &mut dyn FnMut(serde_json::Value)|
     -> Result<()> {
        if let Some(v) = &val_ds {
            let report = evaluate(&model.valid(), v, &tokenizer, &file_cfg, &cfg.data, base_device.clone())?;
            log(format!("eval @ step {step}: {}", report.summary()));
            let mut j = serde_json::to_value(&report).unwrap();
            j["event"] = "eval".into();
            j["eval_step"] = step.into();
            write(j);
            evals.push((step, report));
        }
        Ok(())
    };

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
                    progress.suspend(|| log(format!("skipped {s}")));
                }
            }
            state.batch = batch.index + 1;
            if batch.len >= 2 {
                let lr = cosine_lr(cfg.optim.lr, cfg.optim.warmup, total_steps, state.step);
                let mut replicas = vec![model.clone()];
                replicas.extend(devices[1..].iter().map(|d| model.clone().fork(d)));
                let (tokens, used) = trim_text_padding(&batch.tokens, batch.len, pad);
                let (grads, loss) =
                    batch_gradients(&replicas, &devices, &batch.pixels, &tokens, batch.len, size, used, cfg.accum_freq);
                drop(replicas);
                let (m, gnorm) = optim.step(model, grads, lr);
                model = clamp_logit_scale(m);
                state.step += 1;
                state.samples_seen += batch.len as u64;
                first_loss.get_or_insert(loss);
                last_loss = Some(loss);
                let dt = window.elapsed().as_secs_f64().max(1e-9);
                window = Instant::now();
                let scale = logit_scale_value(&model);
                let sm = StepMetrics {
                    step: state.step,
                    epoch: state.epoch,
                    loss,
                    lr,
                    logit_scale: scale,
                    grad_norm: gnorm,
                    batch: batch.len,
                    samples_per_s: batch.len as f64 / dt,
                    data_wait_s: data_wait,
                };
                write_metric(serde_json::to_value(&sm).unwrap());
                progress.set_position(state.step as u64);
                progress.set_message(format!(
                    "loss {loss:.4}  lr {lr:.2e}  scale {:.2}  {:.1} samples/s",
                    scale.exp(),
                    sm.samples_per_s
                ));
                if quiet || cfg.log_every > 0 && state.step % cfg.log_every == 0 {
                    progress.suspend(|| {
                        log(format!(
                            "step {} epoch {} loss {loss:.5} lr {lr:.3e} logit_scale {scale:.4} grad_norm {gnorm:.3} {:.1} samples/s",
                            state.step, state.epoch, sm.samples_per_s
                        ))
                    });
                }
            }
            let epoch_done = state.batch >= per_epoch;
            if epoch_done {
                log(format!(
                    "epoch {} done: {} samples skipped this epoch ({} in total)",
                    state.epoch, state.skipped_this_epoch, state.skipped_total
                ));
                write_metric(serde_json::json!({
                    "event": "epoch_end", "epoch": state.epoch, "at_step": state.step,
                    "skipped": state.skipped_this_epoch, "skipped_total": state.skipped_total,
                }));
                state.epoch += 1;
                state.batch = 0;
                state.skipped_this_epoch = 0;
            }
            let stop = state.step >= max_steps;
            if (cfg.checkpoint_every > 0 && state.step % cfg.checkpoint_every == 0 && batch.len >= 2)
                || epoch_done
                || stop
            {
                let dir = progress.suspend(|| save_checkpoint(cfg, &file_cfg, &model, &optim, &state))?;
                log(format!("checkpoint {}", dir.display()));
            }
            if (cfg.eval_every > 0 && state.step % cfg.eval_every == 0 && batch.len >= 2) || epoch_done {
                progress.suspend(|| do_eval(&model, state.step, &mut evals, &mut write_metric))?;
            }
            if stop {
                break 'epochs;
            }
            if epoch_done {
                continue 'epochs;
            }
        }
    }
    progress.finish_and_clear();
    log(format!("trained {} steps in {:.1} s", state.step, started.elapsed().as_secs_f64()));
    let final_dir = cfg.output.join("final");
    save_open_clip(&model, &file_cfg, &final_dir).map_err(|e| e.to_string())?;
    log(format!("exported open_clip model to {}", final_dir.display()));
    if cfg.export_web_bundle {
        let bundle_dir = cfg.output.join("web-bundle");
        let opts = dermlip::bundle::ConvertOptions::default();
        let manifest =
            dermlip::bundle::write_bundle(&final_dir, &bundle_dir, &opts).map_err(|e| format!("web bundle: {e}"))?;
        log(format!("web bundle ({} bytes) in {}", manifest.total_bytes(), bundle_dir.display()));
    }
    if let Err(e) = crate::plot::write_plots(&metrics_path, &cfg.output) {
        log(format!("plots: {e}"));
    }
    Ok(Outcome { state, final_dir, first_loss, last_loss, evals, model, file_config: file_cfg })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tiny_config_json;

    /// `train` drops the padding columns of each batch before the forward pass; that must leave the
    /// loss and every gradient as they were (causal attention, pooling at end-of-text).
    #[test]
    fn trimmed_text_padding_leaves_loss_and_gradients_unchanged() {
        let file_cfg = ModelFileConfig::from_json_str(&tiny_config_json(32).to_string()).unwrap();
        let cfg = &file_cfg.model;
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = open_clip_init(Clip::new(cfg, &device), cfg);
        let (n, size, ctx) = (3, 32, cfg.text.context_length);
        let tokenizer = text_tokenizer(cfg).unwrap();
        let tokens: Vec<i32> = ["a red round lesion", "blue", "a small dark brown irregular macule on skin"]
            .iter()
            .flat_map(|t| tokenizer.encode(t).unwrap())
            .map(|i| i as i32)
            .collect();
        let (trimmed, used) = trim_text_padding(&tokens, n, text_pad_id(&cfg.text.arch) as i32);
        assert!(used < ctx, "the test needs padding to trim: {used} of {ctx}");
        let pixels: Vec<f32> = (0..n * 3 * size * size).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let run = |tokens: &[i32], len: usize| {
            let (grads, loss) = batch_gradients(
                std::slice::from_ref(&model),
                std::slice::from_ref(&device),
                &pixels,
                tokens,
                n,
                size,
                len,
                1,
            );
            (loss, grads.global_norm())
        };
        let (full_loss, full_norm) = run(&tokens, ctx);
        let (cut_loss, cut_norm) = run(&trimmed, used);
        assert!((full_loss - cut_loss).abs() < 1e-6, "loss {full_loss} vs {cut_loss}");
        assert!((full_norm - cut_norm).abs() < 1e-5 * full_norm, "gradient norm {full_norm} vs {cut_norm}");
    }
}
