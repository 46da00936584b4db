//! The backend extension that runs dermlip's kernels on Burn's CubeCL backend (with and without
//! fusion), and the checks that decide where they apply.

use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Backend, Dispatch, DispatchDevice};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeBackend;
use cubecl::prelude::*;

use super::attention::{fused_attention_kernel, BLOCK_Q};
use super::layer_norm::{layer_norm_kernel, UNITS as LN_UNITS};
use super::linear::{fused_linear_kernel, ACT_GELU, ACT_NONE, ACT_QUICK_GELU, TILE, UNITS, VEC};
use super::Epilogue;

#[backend_extension(Cube, Fusion)]
pub trait DermlipKernels: Backend {
    /// `act(x · w + b)`, `x` `[m, k]`, `w` `[k, n]`, `b` `[n]` → `[m, n]`.
    #[fusion(dtype = x, shape = Shape::new([x[0], w[1]]))]
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, act: u32) -> FloatTensor<Self>;

    /// Multi-head attention of the first `queries` positions, `qkv` `[batch, seq, 3·width]` →
    /// `[batch, queries, width]`.
    #[fusion(dtype = qkv, shape = Shape::new([qkv[0], *queries as usize, qkv[2] / 3]))]
    fn fused_attention(qkv: FloatTensor<Self>, heads: u32, queries: u32, causal: bool) -> FloatTensor<Self>;

    /// LayerNorm over the last axis of `x` `[rows, width]`.
    #[fusion(dtype = x, shape = x)]
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self>;

    /// `(x + r, LayerNorm(x + r))`, `[rows, width]` each.
    #[fusion(meta = |x, _r, _g, _b, _eps| (x.clone(), x.clone()))]
    fn fused_add_layer_norm(
        x: FloatTensor<Self>,
        r: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl DermlipKernels for CubeBackend {
    fn fused_linear(x: FloatTensor<Self>, w: FloatTensor<Self>, b: FloatTensor<Self>, act: u32) -> FloatTensor<Self> {
        let x = into_contiguous(x);
        let w = into_contiguous(w);
        let b = into_contiguous(b);
        let (m, k) = (x.meta.shape()[0], x.meta.shape()[1]);
        let n = w.meta.shape()[1];
        let dtype = x.dtype;
        let client = x.client.clone();
        let out = empty_device_dtype(client.clone(), x.device.clone(), Shape::new([m, n]), dtype);
        let cubes_x = n.div_ceil(TILE as usize) as u32;
        let cubes_y = m.div_ceil(TILE as usize) as u32;
        fused_linear_kernel::launch(
            &client,
            CubeCount::Static(cubes_x, cubes_y, 1),
            CubeDim::new_2d(UNITS, UNITS),
            VEC,
            x.into_tensor_arg(),
            w.into_tensor_arg(),
            b.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            m as u32,
            k as u32,
            n as u32,
            act,
            burn::backend::cubecl::dtype_to_storage_type(dtype),
        );
        out
    }

    fn fused_attention(qkv: FloatTensor<Self>, heads: u32, queries: u32, causal: bool) -> FloatTensor<Self> {
        let qkv = into_contiguous(qkv);
        let (batch, seq, fused) = (qkv.meta.shape()[0], qkv.meta.shape()[1], qkv.meta.shape()[2]);
        let width = fused / 3;
        let head_dim = width / heads as usize;
        let dtype = qkv.dtype;
        let client = qkv.client.clone();
        let out =
            empty_device_dtype(client.clone(), qkv.device.clone(), Shape::new([batch, queries as usize, width]), dtype);
        fused_attention_kernel::launch(
            &client,
            CubeCount::Static(queries.div_ceil(BLOCK_Q), heads, batch as u32),
            CubeDim::new_1d(BLOCK_Q),
            VEC,
            qkv.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            seq as u32,
            queries,
            width as u32,
            1.0 / (head_dim as f32).sqrt(),
            head_dim,
            causal,
            burn::backend::cubecl::dtype_to_storage_type(dtype),
        );
        out
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        let x = into_contiguous(x);
        // Not written (no residual): a placeholder binding for the kernel's `sum_out`.
        let unused = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([1, VEC]), x.dtype);
        launch_layer_norm(x.clone(), x, gamma, beta, unused, eps, false).1
    }

    fn fused_add_layer_norm(
        x: FloatTensor<Self>,
        r: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let x = into_contiguous(x);
        let sum = empty_device_dtype(x.client.clone(), x.device.clone(), x.meta.shape().clone(), x.dtype);
        launch_layer_norm(x, into_contiguous(r), gamma, beta, sum, eps, true)
    }
}

/// One workgroup per row (columns of 32768 rows past that many, [`layer_norm_applies`] keeps the
/// row count whole); returns `(sum_out, out)`.
fn launch_layer_norm(
    x: CubeTensor,
    r: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    sum_out: CubeTensor,
    eps: f32,
    add_residual: bool,
) -> (CubeTensor, CubeTensor) {
    let gamma = into_contiguous(gamma);
    let beta = into_contiguous(beta);
    let (rows, width) = (x.meta.shape()[0], x.meta.shape()[1]);
    let dtype = x.dtype;
    let client = x.client.clone();
    let out = empty_device_dtype(client.clone(), x.device.clone(), Shape::new([rows, width]), dtype);
    let cubes_x = rows.min(32768) as u32;
    let cubes_y = rows.div_ceil(32768) as u32;
    debug_assert!(rows % cubes_x as usize == 0 || cubes_y == 1, "rows {rows}: grid");
    layer_norm_kernel::launch(
        &client,
        CubeCount::Static(cubes_x, cubes_y, 1),
        CubeDim::new_1d(LN_UNITS),
        VEC,
        x.into_tensor_arg(),
        r.into_tensor_arg(),
        gamma.into_tensor_arg(),
        beta.into_tensor_arg(),
        sum_out.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        width as u32,
        eps,
        add_residual,
        burn::backend::cubecl::dtype_to_storage_type(dtype),
    );
    (sum_out, out)
}

/// LayerNorm's limits: a CubeCL device without autodiff, f32/f16 (f32 statistics), a width that
/// is a multiple of 4, at most 32768 rows per grid column.
pub(super) fn layer_norm_applies(x: &Tensor<2>, gamma: &Tensor<1>, beta: &Tensor<1>) -> bool {
    if !matches!(x.device().as_dispatch(), DispatchDevice::Cube(_)) {
        return false;
    }
    let [rows, width] = x.dims();
    let dtype = x.dtype();
    matches!(dtype, DType::F32 | DType::F16)
        && gamma.dtype() == dtype
        && beta.dtype() == dtype
        && gamma.dims() == [width]
        && beta.dims() == [width]
        && width % VEC == 0
        && width > 0
        && rows > 0
        && (rows <= 32768 || rows % 32768 == 0)
}

pub(super) fn layer_norm(x: Tensor<2>, gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> Tensor<2> {
    Tensor::from_dispatch(Dispatch::fused_layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps as f32,
    ))
}

pub(super) fn add_layer_norm(
    x: Tensor<2>,
    r: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> (Tensor<2>, Tensor<2>) {
    let (sum, normed) = Dispatch::fused_add_layer_norm(
        x.into_dispatch(),
        r.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        eps as f32,
    );
    (Tensor::from_dispatch(sum), Tensor::from_dispatch(normed))
}

/// A CubeCL device without autodiff, float (not quantized) tensors of one dtype, `k` and `n`
/// multiples of 4 (the kernel's vec4 loads).
pub(super) fn linear_applies(x: &Tensor<2>, w: &Tensor<2>, b: &Tensor<1>) -> bool {
    if !matches!(x.device().as_dispatch(), DispatchDevice::Cube(_)) {
        return false;
    }
    let dtype = x.dtype();
    let float = matches!(dtype, DType::F32 | DType::F16);
    let [m, k] = x.dims();
    let [wk, n] = w.dims();
    float
        && w.dtype() == dtype
        && b.dtype() == dtype
        && b.dims() == [n]
        && k == wk
        && k % VEC == 0
        && n % VEC == 0
        && m > 0
        && k > 0
        && n > 0
}

/// The attention kernel's limits: a CubeCL device without autodiff, f32/f16, heads of 4·k ≤ 128
/// values, at most `seq` queries.
pub(super) fn attention_applies(qkv: &Tensor<3>, heads: usize, queries: usize) -> bool {
    if !matches!(qkv.device().as_dispatch(), DispatchDevice::Cube(_)) || heads == 0 {
        return false;
    }
    let [batch, seq, fused] = qkv.dims();
    let width = fused / 3;
    let head_dim = width / heads;
    matches!(qkv.dtype(), DType::F32 | DType::F16)
        && fused == 3 * width
        && width == heads * head_dim
        && head_dim % VEC == 0
        && head_dim > 0
        && head_dim <= 128
        && batch > 0
        && (1..=seq).contains(&queries)
}

pub(super) fn attention(qkv: Tensor<3>, heads: usize, queries: usize, causal: bool) -> Tensor<3> {
    Tensor::from_dispatch(Dispatch::fused_attention(qkv.into_dispatch(), heads as u32, queries as u32, causal))
}

pub(super) fn linear(x: Tensor<2>, w: Tensor<2>, b: Tensor<1>, act: Epilogue) -> Tensor<2> {
    let code = match act {
        Epilogue::None => ACT_NONE,
        Epilogue::Gelu => ACT_GELU,
        Epilogue::QuickGelu => ACT_QUICK_GELU,
    };
    Tensor::from_dispatch(Dispatch::fused_linear(x.into_dispatch(), w.into_dispatch(), b.into_dispatch(), code))
}
