//! dermlip's own GPU kernels, plugged into Burn through its backend extension
//! (`#[backend_extension]`): the model's linear layers as one fused matmul + bias + activation
//! kernel ([`linear`]), multi-head attention in one flash-style pass ([`attention`]) and
//! LayerNorm with the residual add before it ([`layer_norm`], [`add_layer_norm`]).
//! docs/kernels.md describes the tiling and what each kernel is checked against.
//!
//! A kernel runs only where it applies: a CubeCL device (wgpu natively, WebGPU in the browser,
//! CUDA) without autodiff, float weights (not int8) and shapes it handles; everything else takes
//! Burn's own ops, the reference the kernels are tested against ([`linear_reference`]). They are
//! on by default in the browser and off natively ([`set_enabled`] switches them).

use std::cell::Cell;

use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::Tensor;

#[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
pub mod attention;
#[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
mod cube;
#[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
pub mod layer_norm;
#[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
pub mod linear;

/// The activation applied in a linear layer's epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    None,
    /// `nn.GELU()` (exact, erf).
    Gelu,
    /// open_clip's `QuickGELU`: `x · σ(1.702 x)`.
    QuickGelu,
}

/// Which of dermlip's kernels replace Burn's ops (where they apply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    /// The fused linear layers (and the patch embedding).
    pub linear: bool,
    /// The fused attention.
    pub attention: bool,
    /// The fused LayerNorm (and residual add).
    pub layer_norm: bool,
}

impl Kernels {
    pub const ALL: Kernels = Kernels { linear: true, attention: true, layer_norm: true };
    pub const NONE: Kernels = Kernels { linear: false, attention: false, layer_norm: false };
    /// The names the benchmark, the CLI's `bench` and the browser's `setKernels` take.
    pub const NAMES: [(&'static str, Kernels); 5] = [
        ("dermlip", Kernels::ALL),
        ("burn", Kernels::NONE),
        ("linear", Kernels { linear: true, ..Kernels::NONE }),
        ("attention", Kernels { attention: true, ..Kernels::NONE }),
        ("layer-norm", Kernels { layer_norm: true, ..Kernels::NONE }),
    ];

    /// `dermlip` (all of dermlip's), `burn` (none: Burn's default kernels), or one of them alone:
    /// `linear`, `attention`, `layer-norm`.
    pub fn by_name(name: &str) -> Option<Kernels> {
        Kernels::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, k)| k)
    }
}

/// The default: all on in the browser (no autotune there: Burn's default kernels are untuned),
/// off natively, where Burn autotunes and its choice measured faster on lavapipe (docs/kernels.md).
const DEFAULT: Kernels = if cfg!(target_family = "wasm") { Kernels::ALL } else { Kernels::NONE };

thread_local! {
    static ON: Cell<Kernels> = const { Cell::new(DEFAULT) };
}

/// Which of dermlip's kernels the models this thread runs use (a browser engine has one thread;
/// each test has its own).
pub fn set_kernels(k: Kernels) {
    ON.with(|c| c.set(k));
}

/// [`set_kernels`] with all of them (`true`) or none: Burn's default kernels (`false`).
pub fn set_enabled(on: bool) {
    set_kernels(if on { Kernels::ALL } else { Kernels::NONE });
}

/// Which kernels are on for this thread.
pub fn enabled() -> Kernels {
    ON.with(Cell::get)
}

/// `act(x · w + b)` for `x` `[m, k]`, `w` `[k, n]` (Burn's `Linear` layout) and `b` `[n]`: one
/// fused kernel where it applies, Burn's ops otherwise.
pub fn linear(x: Tensor<2>, w: Tensor<2>, b: Option<Tensor<1>>, act: Epilogue) -> Tensor<2> {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    if let Some(b) = &b {
        if linear_uses_own_kernel(&x, &w, Some(b)) {
            return cube::linear(x, w, b.clone(), act);
        }
    }
    linear_reference(x, w, b, act)
}

/// Whether [`linear`] runs dermlip's kernel for these operands (rather than Burn's ops).
pub fn linear_uses_own_kernel(x: &Tensor<2>, w: &Tensor<2>, b: Option<&Tensor<1>>) -> bool {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    if let Some(b) = b {
        return enabled().linear && cube::linear_applies(x, w, b);
    }
    let _ = (x, w, b);
    false
}

/// Whether [`attention`] applies to a fused QKV projection `[batch, seq, 3·width]` of `heads`
/// heads, attended from its first `queries` positions.
pub fn attention_uses_own_kernel(qkv: &Tensor<3>, heads: usize, queries: usize) -> bool {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    return enabled().attention && cube::attention_applies(qkv, heads, queries);
    #[cfg(not(any(not(target_family = "wasm"), feature = "webgpu")))]
    {
        let _ = (qkv, heads, queries);
        false
    }
}

/// Multi-head attention (scale 1/√head_dim, optionally causal) of the first `queries` positions
/// of a fused QKV projection `[batch, seq, 3·width]` (q, k, v in PyTorch's order) in one kernel:
/// `[batch, queries, width]`, heads merged. Only where [`attention_uses_own_kernel`] says so.
pub fn attention(qkv: Tensor<3>, heads: usize, queries: usize, causal: bool) -> Tensor<3> {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    return cube::attention(qkv, heads, queries, causal);
    #[cfg(not(any(not(target_family = "wasm"), feature = "webgpu")))]
    {
        let _ = (qkv, heads, queries, causal);
        unreachable!("attention_uses_own_kernel is false without a GPU backend")
    }
}

/// Whether [`layer_norm`] and [`add_layer_norm`] run dermlip's kernel for `x` `[rows, width]`.
pub fn layer_norm_uses_own_kernel(x: &Tensor<2>, gamma: &Tensor<1>, beta: &Tensor<1>) -> bool {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    return enabled().layer_norm && cube::layer_norm_applies(x, gamma, beta);
    #[cfg(not(any(not(target_family = "wasm"), feature = "webgpu")))]
    {
        let _ = (x, gamma, beta);
        false
    }
}

/// LayerNorm over the last axis (PyTorch's: biased variance of the deviations, `eps` inside the
/// root) in one kernel. Only where [`layer_norm_uses_own_kernel`] says so.
pub fn layer_norm(x: Tensor<2>, gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> Tensor<2> {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    return cube::layer_norm(x, gamma, beta, eps);
    #[cfg(not(any(not(target_family = "wasm"), feature = "webgpu")))]
    {
        let _ = (x, gamma, beta, eps);
        unreachable!("layer_norm_uses_own_kernel is false without a GPU backend")
    }
}

/// `(x + r, LayerNorm(x + r))` in one kernel: the residual add of a pre-norm block and the next
/// norm. Only where [`layer_norm_uses_own_kernel`] says so (for `x`; `r` has its shape).
pub fn add_layer_norm(
    x: Tensor<2>,
    r: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> (Tensor<2>, Tensor<2>) {
    #[cfg(any(not(target_family = "wasm"), feature = "webgpu"))]
    return cube::add_layer_norm(x, r, gamma, beta, eps);
    #[cfg(not(any(not(target_family = "wasm"), feature = "webgpu")))]
    {
        let _ = (x, r, gamma, beta, eps);
        unreachable!("layer_norm_uses_own_kernel is false without a GPU backend")
    }
}

/// [`linear`] with Burn's ops: matmul, bias add, activation.
pub fn linear_reference(x: Tensor<2>, w: Tensor<2>, b: Option<Tensor<1>>, act: Epilogue) -> Tensor<2> {
    let y = x.matmul(w);
    let y = match b {
        Some(b) => y + b.unsqueeze_dim::<2>(0),
        None => y,
    };
    apply_epilogue(y, act)
}

/// The epilogue's activation with Burn's ops (what the fused kernel computes in its epilogue).
pub fn apply_epilogue<const D: usize>(y: Tensor<D>, act: Epilogue) -> Tensor<D> {
    match act {
        Epilogue::None => y,
        Epilogue::Gelu => gelu(y),
        Epilogue::QuickGelu => y.clone() * sigmoid(y * 1.702),
    }
}
