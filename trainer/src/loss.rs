//! open_clip's `ClipLoss`: symmetric InfoNCE over L2-normalised embeddings with a learnable
//! temperature `exp(logit_scale)`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// `x / max(‖x‖₂, 1e-12)` row-wise (`F.normalize`).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `(CE(logits, arange) + CE(logitsᵀ, arange)) / 2` with `logits = exp(logit_scale) · îᵀ t̂`.
/// Row `i` of `image` matches row `i` of `text`. Returns a `[1]` tensor.
pub fn clip_loss(image: Tensor<2>, text: Tensor<2>, logit_scale: Tensor<1>) -> Tensor<1> {
    let [n, _] = image.dims();
    let device = image.device();
    let image = l2_normalize(image);
    let text = l2_normalize(text);
    let scale = logit_scale.exp().reshape([1, 1]);
    let logits = image.matmul(text.transpose()) * scale;
    let labels = Tensor::<1, Int>::arange(0..n as i64, &device).reshape([n, 1]);
    // Means through `sum_all` (Burn's whole-tensor reduction on wgpu is wrong past 262 132 rows).
    let mean = |t: Tensor<2>| crate::optim::sum_all(t.reshape([n])) / n as f64;
    let per_image = mean(log_softmax(logits.clone(), 1).gather(1, labels.clone()));
    let per_text = mean(log_softmax(logits.transpose(), 1).gather(1, labels));
    (per_image + per_text).neg() / 2.0
}
