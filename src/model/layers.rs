//! The layer pieces every tower shares: a linear layer over tokens, the LayerNorm constructor, the
//! normal initializer, the fused-QKV split, the load/save walks of `Linear` and `LayerNorm` (one
//! table of names for both directions, see [`TensorVisitor`]), and open_clip's in-place
//! re-initialisation of a parameter, and the training-only dropouts.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Device, Distribution, Shape, Tensor};

use crate::error::{Error, Result};
use crate::model::kernels;
use crate::weights::TensorVisitor;

/// A linear layer over `[batch, seq, d]` as one `[batch·seq, d]` matmul: one large GEMM instead
/// of a batch of small ones against a broadcast weight.
pub fn token_linear(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    token_linear_act(l, x, kernels::Epilogue::None)
}

/// [`token_linear`] followed by `act`: on a GPU, one fused kernel (matmul, bias, activation; see
/// [`kernels::linear`]); elsewhere Burn's `Linear` and activation.
pub fn token_linear_act(l: &Linear, x: Tensor<3>, act: kernels::Epilogue) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let x = x.reshape([batch * seq, d]);
    let weight = l.weight.val();
    let bias = l.bias.as_ref().map(|b| b.val());
    let y = if kernels::linear_uses_own_kernel(&x, &weight, bias.as_ref()) {
        kernels::linear(x, weight, bias, act)
    } else {
        kernels::apply_epilogue(l.forward(x), act)
    };
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// [`token_linear`] of a layer without a bias of its own, plus `bias` `[out]` kept apart (PanDerm's
/// QKV: `q_bias`, zeros, `v_bias`): on a GPU the bias goes into the fused kernel's epilogue.
pub fn token_linear_plus_bias(l: &Linear, x: Tensor<3>, bias: Tensor<1>) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let x = x.reshape([batch * seq, d]);
    let weight = l.weight.val();
    let y = if l.bias.is_none() && kernels::linear_uses_own_kernel(&x, &weight, Some(&bias)) {
        kernels::linear(x, weight, Some(bias), kernels::Epilogue::None)
    } else {
        l.forward(x) + bias.unsqueeze_dim::<2>(0)
    };
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// LayerNorm of `[batch, seq, width]` tokens (`eps`: the layer's own, which Burn keeps private):
/// on a GPU one fused kernel ([`kernels::layer_norm`]), elsewhere Burn's `LayerNorm`.
pub fn norm_tokens(ln: &LayerNorm, eps: f64, x: Tensor<3>) -> Tensor<3> {
    let [batch, seq, width] = x.dims();
    let gamma = ln.gamma.val();
    if let Some(beta) = ln.beta.as_ref().map(|b| b.val()) {
        let rows = x.clone().reshape([batch * seq, width]);
        if kernels::layer_norm_uses_own_kernel(&rows, &gamma, &beta) {
            return kernels::layer_norm(rows, gamma, beta, eps).reshape([batch, seq, width]);
        }
    }
    ln.forward(x)
}

/// `x + r` and its LayerNorm (a pre-norm block's residual add and the next norm): on a GPU one
/// fused kernel ([`kernels::add_layer_norm`]), elsewhere Burn's add and `LayerNorm`.
pub fn add_norm_tokens(ln: &LayerNorm, eps: f64, x: Tensor<3>, r: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
    let [batch, seq, width] = x.dims();
    let gamma = ln.gamma.val();
    if let Some(beta) = ln.beta.as_ref().map(|b| b.val()) {
        let rows = x.clone().reshape([batch * seq, width]);
        if r.dims() == [batch, seq, width] && kernels::layer_norm_uses_own_kernel(&rows, &gamma, &beta) {
            let (sum, normed) = kernels::add_layer_norm(rows, r.reshape([batch * seq, width]), gamma, beta, eps);
            return (sum.reshape([batch, seq, width]), normed.reshape([batch, seq, width]));
        }
    }
    let sum = x + r;
    (sum.clone(), ln.forward(sum))
}

/// A ViT's patch embedding, a `p×p` convolution with stride `p` and no padding (as both image
/// towers build theirs), as `[batch, grid², width]` tokens in row-major patch order: on a GPU one
/// fused matmul over the unfolded patches ([`kernels::linear`], open_clip's conv as the matmul it
/// is), elsewhere the same matmul in Burn's ops; Burn's `Conv2d` only for an image that is not
/// whole patches (which the preprocessing never makes).
pub fn patch_tokens(conv: &Conv2d, images: Tensor<4>) -> Tensor<3> {
    let [batch, channels, h, w] = images.dims();
    let [width, _, p, _] = conv.weight.dims();
    let (gh, gw) = (h / p, w / p);
    let k = channels * p * p;
    let weight = conv.weight.val().reshape([width, k]).transpose(); // [k, width]
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([width], &images.device()),
    };
    // A view with K columns, only to ask whether the kernel applies (no copy).
    let whole = h % p == 0 && w % p == 0 && batch * h * w > 0;
    if whole {
        let own = kernels::linear_uses_own_kernel(&images.clone().reshape([batch * gh * gw, k]), &weight, Some(&bias));
        let patches =
            images.reshape([batch, channels, gh, p, gw, p]).permute([0, 2, 4, 1, 3, 5]).reshape([batch * gh * gw, k]);
        // dermlip's kernel takes a bias (zeros for open_clip's bias-less conv1); Burn's ops take
        // the conv's own, so amp's half type stays unmixed. Not Burn's Conv2d: on wgpu (Burn
        // 0.22.1) its weight gradient is wrong for a batch of 32 images of 64 px with 16 px
        // patches (9–14× off; right for 8 of them, and at 32 px), which slowed training on wgpu;
        // the trainer's `patch_embedding_gradient_on_wgpu_equals_the_cpus` checks this.
        let bias = if own { Some(bias) } else { conv.bias.as_ref().map(|b| b.val()) };
        return kernels::linear(patches, weight, bias, kernels::Epilogue::None).reshape([batch, gh * gw, width]);
    }
    let x = conv.forward(images); // [b, width, grid, grid]
    let [batch, width, gh, gw] = x.dims();
    x.reshape([batch, width, gh * gw]).swap_dims(1, 2)
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
