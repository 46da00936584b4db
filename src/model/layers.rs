//! The layer pieces every tower shares: a linear layer over tokens, the LayerNorm constructor, the
//! normal initializer, the fused-QKV split, the load/save walks of `Linear` and `LayerNorm` (one
//! table of names for both directions, see [`TensorVisitor`]), and open_clip's in-place
//! re-initialisation of a parameter, and the training-only dropouts.

use burn::module::Param;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Shape, Tensor};

use crate::error::{Error, Result};
use crate::weights::TensorVisitor;

/// A linear layer over `[batch, seq, d]` as one `[batch·seq, d]` matmul: one large GEMM instead
/// of a batch of small ones against a broadcast weight.
pub fn token_linear(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let y = l.forward(x.reshape([batch * seq, d]));
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// Training-time dropout rates (open_clip's `patch_dropout`, a BERT's `hidden_dropout_prob` and
/// `attention_probs_dropout_prob`). Every model is built with zeros; a trainer sets them with
/// [`crate::Clip::with_dropouts`]. They act only on an autodiff device (a training forward): at
/// inference, and in a `valid()` copy, the graph is exactly the inference graph.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dropouts {
    pub patch: f64,
    pub hidden: f64,
    pub attention: f64,
}

impl Dropouts {
    pub fn any(&self) -> bool {
        self.patch > 0.0 || self.hidden > 0.0 || self.attention > 0.0
    }
}

/// Whether a training-only layer with rate `p` acts on `x`: `p > 0` and `x` on an autodiff device.
fn training(x_is_autodiff: bool, p: f64) -> bool {
    p > 0.0 && x_is_autodiff
}

/// torch `nn.Dropout(p)` in training mode (zero with probability `p`, scale the rest by
/// `1/(1-p)`); the identity unless `x` is on an autodiff device.
pub fn train_dropout<const D: usize>(x: Tensor<D>, p: f64) -> Tensor<D> {
    if !training(x.device().is_autodiff(), p) {
        return x;
    }
    let keep = 1.0 - p;
    let mask = x.random_like(Distribution::Bernoulli(keep));
    x * mask * (1.0 / keep)
}

/// open_clip's `PatchDropout(p, exclude_first_token=True)` in training mode on `[batch, 1 + n,
/// width]` tokens: the class token and `max(1, ⌊n·(1−p)⌋)` patch tokens drawn at random per image
/// (the top-k of random scores, as open_clip); the identity unless `x` is on an autodiff device.
pub fn patch_dropout(x: Tensor<3>, p: f64) -> Tensor<3> {
    if !training(x.device().is_autodiff(), p) {
        return x;
    }
    let [batch, seq, width] = x.dims();
    let n = seq - 1;
    let keep = ((n as f64 * (1.0 - p)) as usize).clamp(1, n.max(1));
    let scores = Tensor::<2>::random([batch, n], Distribution::Default, &x.device());
    let idx = scores.argsort(1).narrow(1, 0, keep).unsqueeze_dim::<3>(2).expand([batch, keep, width]);
    let cls = x.clone().narrow(1, 0, 1);
    let patches = x.narrow(1, 1, n).gather(1, idx);
    Tensor::cat(vec![cls, patches], 1)
}

pub fn layer_norm(width: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}

pub fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// A fused `[batch, seq, 3·width]` projection → `(q, k, v)`, each `[batch, heads, seq, head_dim]`
/// (PyTorch's q, k, v order); `queries` keeps only the first positions of q.
pub fn split_qkv(qkv: Tensor<3>, heads: usize, queries: Option<usize>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let [batch, seq, fused] = qkv.dims();
    let head_dim = fused / 3 / heads;
    let qkv = qkv.reshape([batch, seq, 3, heads, head_dim]).permute([2, 0, 3, 1, 4]);
    let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<4>(0);
    let q = match queries {
        Some(n) => q.narrow(2, 0, n),
        None => q,
    };
    let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<4>(0);
    let v = qkv.narrow(0, 2, 1).squeeze_dim::<4>(0);
    (q, k, v)
}

/// A PyTorch `nn.Linear` under `{prefix}.weight` (`[out, in]`) and, exactly when `bias`,
/// `{prefix}.bias`.
pub fn visit_linear(v: &mut impl TensorVisitor, prefix: &str, l: &mut Linear, bias: bool) -> Result<()> {
    v.linear_weight(&format!("{prefix}.weight"), &mut l.weight)?;
    match (&mut l.bias, bias) {
        (Some(b), true) => v.param(&format!("{prefix}.bias"), b),
        (None, false) => Ok(()),
        (Some(_), false) => Err(Error::Weights(format!("{prefix}: unexpected bias (open_clip has none)"))),
        (None, true) => Err(Error::Weights(format!("{prefix}.bias: the layer has no bias"))),
    }
}

/// A bias the checkpoint always holds, under `key`.
pub fn visit_bias(v: &mut impl TensorVisitor, key: &str, bias: &mut Option<Param<Tensor<1>>>) -> Result<()> {
    match bias {
        Some(b) => v.param(key, b),
        None => Err(Error::Weights(format!("{key}: the layer has no bias"))),
    }
}

/// A PyTorch `nn.LayerNorm` (with bias): `{prefix}.weight`, `{prefix}.bias`.
pub fn visit_layer_norm(v: &mut impl TensorVisitor, prefix: &str, ln: &mut LayerNorm) -> Result<()> {
    v.param(&format!("{prefix}.weight"), &mut ln.gamma)?;
    match &mut ln.beta {
        Some(b) => v.param(&format!("{prefix}.bias"), b),
        None => Err(Error::Weights(format!("{prefix}: LayerNorm without bias"))),
    }
}

/// Re-initialises one parameter in place, as open_clip's `init_parameters` overwrites what the
/// layer constructor drew: the parameter's own (lazy) initializer runs first, drawing from the
/// device's RNG as it always would, then `value(shape, device)` replaces it (same id and training
/// state). Towers call this parameter by parameter in module order, so the sequence of random
/// draws for a seed is fixed.
pub fn reinit<const D: usize>(
    p: Param<Tensor<D>>,
    value: impl FnOnce(Shape, &Device) -> Tensor<D>,
) -> Param<Tensor<D>> {
    let shape = p.lazy_shape();
    let device = p.lazy_device();
    let (id, _, mapper) = p.consume();
    let t = value(shape, &device);
    let t = if t.is_autodiff() { t.require_grad() } else { t };
    Param::from_mapped_value(id, t, mapper)
}

/// [`reinit`] with zeros.
pub fn init_zeros<const D: usize>(p: Param<Tensor<D>>) -> Param<Tensor<D>> {
    reinit(p, |shape, device| Tensor::zeros(shape, device))
}

/// [`reinit`] with a fresh draw from `distribution`.
pub fn init_random<const D: usize>(p: Param<Tensor<D>>, distribution: Distribution) -> Param<Tensor<D>> {
    reinit(p, |shape, device| Tensor::random(shape, distribution, device))
}
