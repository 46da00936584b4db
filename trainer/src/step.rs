//! One optimisation step: the gradients of open_clip's contrastive loss over a batch (with
//! gradient accumulation and data parallelism), the AdamW update and the logit-scale clamp.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use dermlip::input::tokenizer::TextIds;
use dermlip::Clip;

use crate::loss::clip_loss;
use crate::optim::{AdamW, Grads};

/// What one optimisation step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// The loss or the gradient norm was not finite: the update was skipped (the model, the
    /// optimiser moments and its step count are unchanged).
    pub skipped: bool,
}

/// One optimisation step on a loaded batch (`pixels`, `tokens` without their padding columns):
/// the model is replicated on `devices[1..]`, the global-batch gradients are summed and AdamW
/// steps at `lr`; then the logit scale is clamped. When the loss or the global gradient norm is
/// NaN or infinite the update is skipped instead (open_clip's AMP GradScaler skips such steps
/// too), so one bad batch cannot poison the weights or the AdamW moments.
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
    let mut replicas = vec![model.clone()];
    replicas.extend(devices[1..].iter().map(|d| model.clone().fork(d)));
    let (grads, loss) = batch_gradients(&replicas, devices, pixels, tokens, size, accum_freq);
    drop(replicas);
    let grad_norm = grads.global_norm();
    if !loss.is_finite() || !grad_norm.is_finite() {
        return (model, StepOutcome { loss, grad_norm, skipped: true });
    }
    let m = optim.step_with_norm(model, grads, lr, grad_norm);
    (clamp_logit_scale(m), StepOutcome { loss, grad_norm, skipped: false })
}

/// [`guarded_step`] without the outcome's flag: returns the new model, the loss and the gradient
/// norm.
#[allow(clippy::too_many_arguments)]
pub fn optimisation_step(
    model: Clip,
    optim: &mut AdamW,
    devices: &[Device],
    pixels: &[f32],
    tokens: &TextIds,
    size: usize,
    accum_freq: usize,
    lr: f64,
) -> (Clip, f64, f64) {
    let (m, o) = guarded_step(model, optim, devices, pixels, tokens, size, accum_freq, lr);
    (m, o.loss, o.grad_norm)
}

/// Splits a loaded batch into `k` micro-batches and returns the summed gradients of the
/// global-batch loss (open_clip `--accum-freq`: features of the other micro-batches are computed
/// without gradient and reused as negatives), and the loss value.
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
    let n = tokens.rows;
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
        (img, tokens.tensor_rows(a..b, device))
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
    model.logit_scale = model.logit_scale.map(|t| Tensor::from_inner(t.inner().clamp(0.0, max)).require_grad());
    model
}

pub fn logit_scale_value(model: &Clip) -> f64 {
    model.logit_scale.val().into_scalar::<f32>() as f64
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
