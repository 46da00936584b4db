//! One optimisation step: the gradients of open_clip's contrastive loss over a batch (with
//! gradient accumulation, data parallelism and mixed precision), the AdamW update and the
//! logit-scale clamp — all queued on the device. Nothing is read back during a step: the
//! non-finite guard, the loss scaler and the counters are tensors, and [`Stepper::read`] fetches
//! the numbers in one readback when the run logs them.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Bool, DType, Device, FloatDType, Int, Tensor, TensorData};
use dermlip::input::tokenizer::TextIds;
use dermlip::Clip;

use crate::loss::clip_loss;
use crate::optim::{all_reduce, AdamW, Grads, Reduction};
use crate::pixels::HostPixels;

/// The arithmetic of the towers' forward and backward passes (open_clip `--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// Mixed precision: f32 master weights, AdamW moments and loss; the towers run in `dtype`
    /// (their weights are cast inside the autodiff graph, so the gradients reach the f32 masters).
    /// F16 adds dynamic loss scaling as torch's `GradScaler`; BF16 needs none.
    Amp(FloatDType),
}

impl Precision {
    /// `--precision`: `f32` (`fp32`), `amp` (bf16 on CUDA, f16 + loss scaling elsewhere),
    /// `amp_bf16` (`amp_bfloat16`), `amp_f16` (`amp_fp16`), or `auto` (the default: `amp` on a
    /// GPU backend — CUDA, wgpu — whose device has that half type, f32 on the CPU and on a GPU
    /// without it). An explicit half precision the device lacks is an error.
    pub fn resolve(name: &str, device_name: &str, device: &Device) -> Result<Precision, String> {
        let gpu = matches!(device_name, "cuda" | "wgpu");
        let best = if device_name == "cuda" { FloatDType::BF16 } else { FloatDType::F16 };
        let want = match name {
            "f32" | "fp32" => return Ok(Precision::F32),
            "auto" if !gpu => return Ok(Precision::F32),
            "auto" => {
                return Ok(if device.supports_dtype(best) { Precision::Amp(best) } else { Precision::F32 });
            }
            "amp" => best,
            "amp_bf16" | "amp_bfloat16" => FloatDType::BF16,
            "amp_f16" | "amp_fp16" => FloatDType::F16,
            other => {
                return Err(format!("unknown precision \"{other}\" (auto, amp, amp_bf16, amp_f16, f32)"));
            }
        };
        if !device.supports_dtype(want) {
            return Err(format!(
                "--precision {name}: this {device_name} device has no {want:?} arithmetic (a WebGPU/Vulkan adapter \
                 needs shader-f16); use --precision f32"
            ));
        }
        Ok(Precision::Amp(want))
    }

    /// The name `train_config.toml` and the log use.
    pub fn label(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Amp(FloatDType::BF16) => "amp_bf16",
            Precision::Amp(_) => "amp_f16",
        }
    }

    fn scaled(&self) -> bool {
        matches!(self, Precision::Amp(FloatDType::F16))
    }
}

/// torch's `GradScaler` defaults: initial scale 2¹⁶, ×2 after 2000 steps without overflow, ×½
/// (and the step skipped) on an overflow.
pub const INIT_LOSS_SCALE: f64 = 65536.0;
pub const GROWTH_INTERVAL: f64 = 2000.0;

/// What one optimisation step did (read back).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    /// Global gradient norm before clipping (unscaled).
    pub grad_norm: f64,
    /// The loss or the gradient norm was not finite: the update was skipped (the model, the
    /// optimiser moments and its step count are unchanged).
    pub skipped: bool,
}

/// The numbers of the run read back in one go (see [`Stepper::read`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Loss and global gradient norm (unscaled, before clipping) of the last step.
    pub loss: f64,
    pub grad_norm: f64,
    pub logit_scale: f64,
    /// Steps skipped for a non-finite loss (f32) or gradient (without loss scaling), since the
    /// stepper was made, and the current run of them.
    pub nonfinite_total: u64,
    pub nonfinite_in_a_row: u64,
    /// f16 loss-scaler back-offs (a non-finite loss or gradient: the step skipped and the scale
    /// halved), since the stepper was made.
    pub scaler_skips: u64,
    /// The loss scale now (1 without f16 loss scaling).
    pub loss_scale: f64,
    /// Consecutive steps without overflow (the scaler's growth tracker).
    pub scaler_good_steps: u64,
}

/// The optimisation step's state that stays on the devices between steps: the data-parallel
/// replicas, the loss scaler and the counters.
pub struct Stepper {
    /// The autodiff devices; `devices[0]` holds the trained model and the optimiser.
    devices: Vec<Device>,
    /// The model and its AdamW on `devices[1..]`, made from the trained model and optimiser at
    /// the first step and kept: every step applies the same reduced gradient to each of them.
    replicas: Vec<(Clip, AdamW)>,
    reduction: Reduction,
    /// Batches go through page-locked host memory on their way to the devices.
    pinned: bool,
    precision: Precision,
    size: usize,
    accum_freq: usize,
    /// `[6]` on the main device: nonfinite_total, nonfinite_in_a_row, scaler_skips, loss scale,
    /// scaler good steps, unused.
    counters: Tensor<1>,
    /// `[2]`: loss and gradient norm of the last step.
    last: Option<Tensor<1>>,
}

const C_NONFINITE: usize = 0;
const C_IN_A_ROW: usize = 1;
const C_SCALER_SKIPS: usize = 2;
const C_SCALE: usize = 3;
const C_GOOD: usize = 4;
const NUM_COUNTERS: usize = 5;

impl Stepper {
    /// `devices`: autodiff devices (data parallel over all of them). `in_a_row`, `loss_scale`
    /// and `good_steps` continue a resumed run's state.
    pub fn new(devices: &[Device], precision: Precision, size: usize, accum_freq: usize) -> Self {
        let main = devices[0].clone().inner();
        let scale = if precision.scaled() { INIT_LOSS_SCALE as f32 } else { 1.0 };
        let mut c = vec![0f32; NUM_COUNTERS];
        c[C_SCALE] = scale;
        Stepper {
            devices: devices.to_vec(),
            replicas: Vec::new(),
            reduction: Reduction::ViaMain,
            pinned: false,
            precision,
            size,
            accum_freq,
            counters: Tensor::from_data(TensorData::new(c, [NUM_COUNTERS]), (&main, DType::F32)),
            last: None,
        }
    }

    /// The choices that depend on the backend `--device name` (the training loop and `--bench`
    /// make them; a new stepper sums through device 0 from pageable memory):
    /// - the gradient reduction, [`Reduction::for_device`];
    /// - page-locked batch uploads on CUDA (Burn's `Device::staging`). wgpu has no such memory
    ///   (Burn's call returns unchanged after a round trip to the device's thread, so it is not
    ///   made) and flex needs none.
    pub fn for_backend(mut self, name: &str) -> Self {
        self.reduction = Reduction::for_device(name);
        self.pinned = name == "cuda";
        self
    }

    /// The replicas on `devices[1..]` as they are now (tests: they must equal the trained model).
    pub fn replicas(&self) -> impl Iterator<Item = &Clip> {
        self.replicas.iter().map(|(m, _)| m)
    }

    /// Continues a resumed run: the current run of non-finite steps and the loss scaler's state.
    pub fn resume(&mut self, in_a_row: u64, loss_scale: Option<f64>, good_steps: u64) {
        let main = self.devices[0].clone().inner();
        let mut c = vec![0f32; NUM_COUNTERS];
        c[C_IN_A_ROW] = in_a_row as f32;
        c[C_SCALE] = if self.precision.scaled() { loss_scale.unwrap_or(INIT_LOSS_SCALE) as f32 } else { 1.0 };
        c[C_GOOD] = good_steps as f32;
        self.counters = Tensor::from_data(TensorData::new(c, [NUM_COUNTERS]), (&main, DType::F32));
    }

    /// One optimisation step on a loaded batch (`pixels`: CHW rows, `u8` as the loader delivers
    /// them or normalised f32; `tokens` without their padding columns), queued on the devices
    /// without a single readback: every shard is launched on its replica before any result is
    /// gathered, each replica's gradient is accumulated on its own device, the gradients are
    /// summed once (the step's one [`Reduction`]), and AdamW steps at `lr` on every device with
    /// the same sum — the trained model on `devices[0]` with `optim`, each replica with its own
    /// copy of it; then the logit scale is clamped.
    /// When the loss or the global gradient norm is NaN or infinite the update is skipped on
    /// the device (open_clip's AMP GradScaler skips such steps too), so one bad batch cannot
    /// poison the weights or the AdamW moments; with f16 loss scaling a skipped step also halves
    /// the scale.
    ///
    /// The replicas follow the model from step to step: `model` must be the model the previous
    /// `step` of this stepper returned (a changed model, or a re-loaded optimiser, needs a new
    /// `Stepper`). The first step makes them from `model` and `optim`.
    pub fn step(
        &mut self,
        model: Clip,
        optim: &mut AdamW,
        pixels: impl Into<HostPixels>,
        tokens: &TextIds,
        lr: f64,
    ) -> Clip {
        if self.replicas.len() + 1 != self.devices.len() {
            self.replicas = self.devices[1..].iter().map(|d| (model.clone().fork(d), optim.fork(d))).collect();
        }
        let (replicas, replica_optims): (Vec<Clip>, Vec<AdamW>) =
            std::mem::take(&mut self.replicas).into_iter().unzip();
        let models: Vec<&Clip> = std::iter::once(&model).chain(replicas.iter()).collect();
        let c = self.counters.clone();
        let scale = c.clone().narrow(0, C_SCALE, 1);
        let scaled = self.precision.scaled();
        let (acc, loss) = gradients(
            &models,
            &self.devices,
            pixels.into(),
            tokens,
            self.size,
            self.accum_freq,
            self.precision,
            scaled.then_some(&scale),
            self.pinned,
        );
        let inner: Vec<Device> = self.devices.iter().map(|d| d.clone().inner()).collect();
        let mut sums = all_reduce(acc, &inner, self.reduction).into_iter();
        let grads = sums.next().expect("the main device's gradients");
        let sq = grads.norm_squared().map_or_else(|| Tensor::zeros([1], &inner[0]), |t| t.inner());
        let loss_ok = loss.clone().is_finite();
        let grad_ok = sq.clone().is_finite();
        let ok = loss_ok.clone().bool_and(grad_ok);
        let unscale = scale.clone().recip();
        // Every replica takes the step with the main device's norm and verdict (tiny copies), so
        // a skipped or clipped step is skipped or clipped everywhere alike.
        self.replicas = replicas
            .into_iter()
            .zip(replica_optims)
            .zip(sums)
            .zip(&inner[1..])
            .map(|(((r, mut o), g), dev)| {
                let here = |t: &Tensor<1>| t.clone().to_device(dev);
                let r = o.step_on_device(r, g, lr, here(&sq), ok.clone().to_device(dev), here(&unscale));
                (clamp_logit_scale(r), o)
            })
            .collect();
        let m = optim.step_on_device(model, grads, lr, sq.clone(), ok.clone(), unscale.clone());
        let m = clamp_logit_scale(m);
        // The counters, on the device.
        let f = |b: Tensor<1, Bool>| b.float().cast(DType::F32);
        let ok_f = f(ok);
        // With loss scaling, only a non-finite loss counts as a non-finite step (an overflowing
        // gradient is the scaler's business); any skipped step halves the scale, as GradScaler
        // does (a non-finite loss gives non-finite gradients there).
        let nonfinite = if scaled { f(loss_ok.bool_not()) } else { ok_f.clone().neg() + 1.0 };
        let scaler_skip = if scaled { ok_f.clone().neg() + 1.0 } else { ok_f.zeros_like() };
        let at = |i: usize| c.clone().narrow(0, i, 1);
        let total = at(C_NONFINITE) + nonfinite.clone();
        // The current run of non-finite steps: one more, or back to 0 (a step the loss scaler
        // skipped for its gradient had a finite loss).
        let in_a_row = (at(C_IN_A_ROW) + nonfinite.clone()) * nonfinite;
        let skips = at(C_SCALER_SKIPS) + scaler_skip.clone();
        let (new_scale, good) = if scaled {
            // GradScaler.update: ×½ on overflow, ×2 after GROWTH_INTERVAL good steps in a row.
            let good = (at(C_GOOD) + 1.0) * ok_f.clone();
            let grow = good.clone().greater_equal_elem(GROWTH_INTERVAL);
            let s = scale.clone() * (scaler_skip.clone() * -0.5 + 1.0);
            let s = s.clone().mask_where(grow.clone(), s * 2.0);
            (s, good.mask_fill(grow, 0.0))
        } else {
            (scale, at(C_GOOD))
        };
        self.counters = Tensor::cat(vec![total, in_a_row, skips, new_scale, good], 0);
        self.last = Some(Tensor::cat(vec![loss.reshape([1]), sq.sqrt() * unscale], 0));
        m
    }

    /// Reads the last step's loss, gradient norm, the logit scale and the counters back: the one
    /// place the training loop waits for the devices (at `log_every`, checkpoints, epoch ends).
    /// `None` before the first step.
    pub fn read(&self, model: &Clip) -> Option<StepReport> {
        let last = self.last.clone()?;
        let main_inner = self.devices[0].clone().inner();
        let scale = model.logit_scale.val().inner().to_device(&main_inner).cast(DType::F32).reshape([1]);
        let all = Tensor::cat(vec![last, scale, self.counters.clone()], 0);
        let v = all.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        let at = |i: usize| v.get(i).copied().unwrap_or(f32::NAN) as f64;
        let c = |i: usize| at(3 + i);
        Some(StepReport {
            loss: at(0),
            grad_norm: at(1),
            logit_scale: at(2),
            nonfinite_total: c(C_NONFINITE) as u64,
            nonfinite_in_a_row: c(C_IN_A_ROW) as u64,
            scaler_skips: c(C_SCALER_SKIPS) as u64,
            loss_scale: c(C_SCALE),
            scaler_good_steps: c(C_GOOD) as u64,
        })
    }
}

/// One optimisation step with a stepper of its own, read back at once (tests and tools; the
/// training loop keeps a [`Stepper`] and reads only when it logs).
#[allow(clippy::too_many_arguments)]
pub fn guarded_step(
    model: Clip,
    optim: &mut AdamW,
    devices: &[Device],
    pixels: &[f32],
    tokens: &TextIds,
    size: usize,
    accum_freq: usize,
    lr: f64,
) -> (Clip, StepOutcome) {
    let mut stepper = Stepper::new(devices, Precision::F32, size, accum_freq);
    let m = stepper.step(model, optim, pixels.to_vec(), tokens, lr);
    let r = stepper.read(&m).expect("a step was taken");
    (m, StepOutcome { loss: r.loss, grad_norm: r.grad_norm, skipped: r.nonfinite_total > 0 })
}

/// Casts every float parameter to `dtype` **inside** the autodiff graph: the cast copy's
/// gradients flow back to the f32 masters (the gradient of a cast is cast back).
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|t| t.cast(dtype))
    }
}

/// The model the towers run: the f32 model itself, or its half-precision cast.
fn compute_model(model: &Clip, precision: Precision) -> Clip {
    match precision {
        Precision::F32 => model.clone(),
        Precision::Amp(dtype) => model.clone().map(&mut CastParams(dtype)),
    }
}

/// Image and text embeddings of one shard, in f32 (mixed precision: the towers in half, the
/// embeddings cast back so the loss and its softmax run in f32).
fn encode(model: &Clip, img: Tensor<4>, ids: Tensor<2, Int>, precision: Precision) -> (Tensor<2>, Tensor<2>) {
    match precision {
        Precision::F32 => (model.encode_image(img), model.encode_text(ids)),
        Precision::Amp(dtype) => {
            (model.encode_image(img.cast(dtype)).cast(FloatDType::F32), model.encode_text(ids).cast(FloatDType::F32))
        }
    }
}

/// Splits a loaded batch into `k` micro-batches and returns the summed gradients of the
/// global-batch loss (open_clip `--accum-freq`: features of the other micro-batches are computed
/// without gradient and reused as negatives), and the loss value. Reads back (tests, tools).
///
/// Data parallelism: `models[d]` is a replica on `devices[d]` (`models[0]` is the trained model).
/// Each micro-batch is sharded over the replicas; their embeddings are moved to `devices[0]` and
/// concatenated, so one loss sees the **gathered** global batch as negatives, and one backward
/// pass reaches every replica. Their gradients (same `ParamId`s) are summed on `devices[0]`.
pub fn batch_gradients(
    models: &[Clip],
    devices: &[Device],
    pixels: &[f32],
    tokens: &TextIds,
    size: usize,
    k: usize,
) -> (Grads, f64) {
    let refs: Vec<&Clip> = models.iter().collect();
    let (acc, loss) = gradients(&refs, devices, pixels.to_vec().into(), tokens, size, k, Precision::F32, None, false);
    let inner: Vec<Device> = devices.iter().map(|d| d.clone().inner()).collect();
    let g = all_reduce(acc, &inner, Reduction::ViaMain).into_iter().next().unwrap_or_default();
    (g, loss.into_scalar::<f32>() as f64)
}

/// [`batch_gradients`] with the loss as a `[1]` tensor on the main device (nothing read back),
/// mixed precision and an optional loss scale (`[1]`, multiplies the loss before backward: the
/// gradients come out scaled; the returned loss is not), and each replica's gradients left on
/// its device (`out[d]`: the sum over the micro-batches of `models[d]`'s gradients, unreduced).
#[allow(clippy::too_many_arguments)]
fn gradients(
    models: &[&Clip],
    devices: &[Device],
    pixels: HostPixels,
    tokens: &TextIds,
    size: usize,
    k: usize,
    precision: Precision,
    loss_scale: Option<&Tensor<1>>,
    pinned: bool,
) -> (Vec<Grads>, Tensor<1>) {
    let n = tokens.rows;
    let main = &devices[0];
    let main_inner = main.clone().inner();
    let nd = models.len();
    let k = k.clamp(1, n.max(1));
    let per_img = 3 * size * size;
    let bounds: Vec<(usize, usize)> = (0..k).map(|j| (j * n / k, (j + 1) * n / k)).collect();
    // shards[j]: (device, rows a..b) of micro-batch j.
    let shards: Vec<Vec<(usize, (usize, usize))>> = bounds
        .iter()
        .map(|&(a, b)| {
            let m = b - a;
            (0..nd).map(|d| (d, (a + d * m / nd, a + (d + 1) * m / nd))).filter(|(_, (x, y))| y > x).collect()
        })
        .collect();
    // The batch goes to the devices once: device d gets its rows of every micro-batch as one
    // tensor (one device, one micro-batch order: the host buffer itself, without a copy), kept
    // there for both passes; `at[j][i]` is shard i of micro-batch j as (device, row offset, rows).
    let mut rows_of: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nd];
    let mut at: Vec<Vec<(usize, usize, usize)>> = Vec::with_capacity(k);
    for js in &shards {
        let mut here = Vec::with_capacity(js.len());
        for &(d, (a, b)) in js {
            let off: usize = rows_of[d].iter().map(|(x, y)| y - x).sum();
            rows_of[d].push((a, b));
            here.push((d, off, b - a));
        }
        at.push(here);
    }
    let upload = |d: usize, data: HostPixels, rows: &[(usize, usize)]| -> (Tensor<4>, Tensor<2, Int>) {
        let dev = devices[d].clone().inner();
        let total: usize = rows.iter().map(|(a, b)| b - a).sum();
        let img = data.upload(total, size, &dev, pinned);
        let ids: Vec<i32> =
            rows.iter().flat_map(|&(a, b)| tokens.ids[a * tokens.len..b * tokens.len].iter().copied()).collect();
        (img, Tensor::<2, Int>::from_data(TensorData::new(ids, [total, tokens.len]), &dev))
    };
    let uploaded: Vec<(Tensor<4>, Tensor<2, Int>)> = if nd == 1 {
        vec![upload(0, pixels, &rows_of[0])]
    } else {
        rows_of.iter().enumerate().map(|(d, rows)| upload(d, pixels.gather(rows, per_img), rows)).collect()
    };
    let input = |j: usize, i: usize| -> (usize, Tensor<4>, Tensor<2, Int>) {
        let (d, off, len) = at[j][i];
        let (img, ids) = &uploaded[d];
        (d, img.clone().narrow(0, off, len), ids.clone().narrow(0, off, len))
    };
    // Per-device gradient sums (reduced by the caller, once per step).
    let mut acc: Vec<Grads> = (0..nd).map(|_| Grads::default()).collect();
    let mut collect = |mut g: burn::tensor::Gradients| {
        for (d, m) in models.iter().enumerate() {
            acc[d].add(Grads::from_gradients(&mut g, *m));
        }
    };
    // The live (with gradient) embeddings of micro-batch j: every shard launched on its device
    // first, then gathered on the main device.
    let live = |j: usize| -> (Tensor<2>, Tensor<2>) {
        let launched: Vec<(Tensor<2>, Tensor<2>)> = (0..at[j].len())
            .map(|i| {
                let (d, img, ids) = input(j, i);
                let m = compute_model(models[d], precision);
                encode(&m, onto(img, &devices[d]), onto(ids, &devices[d]), precision)
            })
            .collect();
        let (is, ts): (Vec<_>, Vec<_>) =
            launched.into_iter().map(|(i, t)| (i.to_device(main), t.to_device(main))).unzip();
        (Tensor::cat(is, 0), Tensor::cat(ts, 0))
    };
    let backward = |loss: Tensor<1>| match loss_scale {
        Some(s) => (loss * onto(s.clone(), main)).backward(),
        None => loss.backward(),
    };
    if k == 1 {
        let (img, txt) = live(0);
        let loss = clip_loss(img, txt, models[0].logit_scale.val());
        let value = loss.clone().inner();
        collect(backward(loss));
        return (acc, value);
    }
    // Pass 1: every micro-batch's features, without gradient (all launched, then gathered).
    let frozen: Vec<Clip> = models.iter().map(|m| compute_model(&m.valid(), precision)).collect();
    let launched: Vec<Vec<(Tensor<2>, Tensor<2>)>> = (0..k)
        .map(|j| {
            (0..at[j].len())
                .map(|i| {
                    let (d, img, ids) = input(j, i);
                    encode(&frozen[d], img, ids, precision)
                })
                .collect()
        })
        .collect();
    drop(frozen);
    let cached: Vec<(Tensor<2>, Tensor<2>)> = launched
        .into_iter()
        .map(|shards| {
            let (is, ts): (Vec<_>, Vec<_>) =
                shards.into_iter().map(|(i, t)| (i.to_device(&main_inner), t.to_device(&main_inner))).unzip();
            (Tensor::cat(is, 0), Tensor::cat(ts, 0))
        })
        .collect();
    // Pass 2: one micro-batch live at a time, against all the others' cached features.
    let mut value = None;
    for j in 0..k {
        let (live_img, live_txt) = live(j);
        let mut imgs = Vec::with_capacity(k);
        let mut txts = Vec::with_capacity(k);
        for (i, (ci, ct)) in cached.iter().enumerate() {
            if i == j {
                imgs.push(live_img.clone());
                txts.push(live_txt.clone());
            } else {
                imgs.push(onto(ci.clone(), main));
                txts.push(onto(ct.clone(), main));
            }
        }
        // Same value; gradient 1/k per pass so logit_scale's summed gradient is the global loss's
        // (open_clip lets it accumulate k times).
        let s = models[0].logit_scale.val();
        let s = s.clone().detach() + (s.clone() - s.detach()) / k as f64;
        let loss = clip_loss(Tensor::cat(imgs, 0), Tensor::cat(txts, 0), s);
        value = Some(loss.clone().inner());
        collect(backward(loss));
    }
    (acc, value.expect("k >= 1"))
}

/// `t` (without autodiff) on the autodiff device `like`, with its gradient-checkpointing strategy
/// (operands of one operation must share it).
pub fn onto<const D: usize, K: burn::tensor::kind::Autodiff>(t: Tensor<D, K>, like: &Device) -> Tensor<D, K> {
    let t = t.autodiff();
    match like.gradient_checkpointing_strategy() {
        Some(s) => t.with_gradient_checkpointing_strategy(s),
        None => t,
    }
}

/// Forces every lazily initialised parameter, so replicas forked from the model share its values.
pub fn materialize(model: &Clip) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

pub fn clamp_logit_scale(mut model: Clip) -> Clip {
    let max = 100f64.ln();
    model.logit_scale = model.logit_scale.map(|t| {
        let home = t.device();
        onto(t.inner().clamp(0.0, max), &home).require_grad()
    });
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::tiny_config_json;
    use crate::train::text_tokenizer;
    use dermlip::input::tokenizer::text_pad_id;
    use dermlip::ModelFileConfig;

    /// `train` drops the padding columns of each batch before the forward pass; that must leave the
    /// loss and every gradient as they were (causal attention, pooling at end-of-text).
    #[test]
    fn trimmed_text_padding_leaves_loss_and_gradients_unchanged() {
        let file_cfg = ModelFileConfig::from_json_str(&tiny_config_json(32).to_string()).unwrap();
        let cfg = &file_cfg.model;
        let device = Device::flex().autodiff();
        device.seed(7);
        let model = Clip::new(cfg, &device).init_parameters();
        let (n, size, ctx) = (3, 32, cfg.text.context_length);
        let tokenizer = text_tokenizer(cfg).unwrap();
        let tokens: Vec<i32> = ["a red round lesion", "blue", "a small dark brown irregular macule on skin"]
            .iter()
            .flat_map(|t| tokenizer.encode(t).unwrap())
            .map(|i| i as i32)
            .collect();
        let trimmed = TextIds::trimmed(&tokens, n, text_pad_id(&cfg.text.arch));
        let used = trimmed.len;
        assert!(used < ctx, "the test needs padding to trim: {used} of {ctx}");
        let pixels: Vec<f32> = (0..n * 3 * size * size).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let run = |tokens: &TextIds| {
            let (grads, loss) =
                batch_gradients(std::slice::from_ref(&model), std::slice::from_ref(&device), &pixels, tokens, size, 1);
            (loss, grads.global_norm())
        };
        let (full_loss, full_norm) = run(&TextIds { ids: tokens.clone(), rows: n, len: ctx });
        let (cut_loss, cut_norm) = run(&trimmed);
        assert!((full_loss - cut_loss).abs() < 1e-6, "loss {full_loss} vs {cut_loss}");
        assert!((full_norm - cut_norm).abs() < 1e-5 * full_norm, "gradient norm {full_norm} vs {cut_norm}");
    }
}
