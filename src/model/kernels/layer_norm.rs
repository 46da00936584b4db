//! The fused LayerNorm kernel: one workgroup per row, mean and variance reduced in workgroup
//! memory (two passes over the row, as PyTorch: the variance of the deviations), then
//! `(x − mean) / √(var + eps) · γ + β` written in the same dispatch; with `residual`, the row is
//! `x + r` and that sum is written too (the pre-norm block's `x + attn(…)` then `ln_2(x)`).

use cubecl::prelude::*;

/// Units per workgroup (one workgroup per row).
pub const UNITS: u32 = 64;
/// The vector width of every load and store (vec4).
pub const VEC: usize = 4;

#[cube(launch)]
pub fn layer_norm_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    residual: &Tensor<Vector<F, N>>,
    gamma: &Tensor<Vector<F, N>>,
    beta: &Tensor<Vector<F, N>>,
    sum_out: &mut Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    width: u32,
    eps: f32,
    #[comptime] add_residual: bool,
    #[define(F)] _dtype: ElemType,
) {
    let row = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let unit = UNIT_POS_X as usize;
    let wv = (width as usize) / VEC;
    let base = row * wv;
    let mut partial = Shared::<[f32]>::new_slice(UNITS as usize);

    // Pass 1: the row (x + r when fused, written back), and its sum.
    let mut s = f32::new(0.0f32);
    let mut i = unit;
    while i < wv {
        let mut v = Vector::<f32, N>::cast_from(x[base + i]);
        if add_residual {
            v += Vector::<f32, N>::cast_from(residual[base + i]);
            sum_out[base + i] = Vector::cast_from(v);
        }
        s += v.extract(0usize) + v.extract(1usize) + v.extract(2usize) + v.extract(3usize);
        i += UNITS as usize;
    }
    let mean = workgroup_sum(&mut partial, s, unit) / f32::cast_from(width);

    // Pass 2: the variance of the deviations.
    let mean_v = Vector::<f32, N>::broadcast(mean);
    let mut q = f32::new(0.0f32);
    let mut i = unit;
    while i < wv {
        let mut v = Vector::<f32, N>::cast_from(x[base + i]);
        if add_residual {
            v += Vector::<f32, N>::cast_from(residual[base + i]);
        }
        let d = v - mean_v;
        let d2 = d * d;
        q += d2.extract(0usize) + d2.extract(1usize) + d2.extract(2usize) + d2.extract(3usize);
        i += UNITS as usize;
    }
    let var = workgroup_sum(&mut partial, q, unit) / f32::cast_from(width);
    let inv = Vector::<f32, N>::broadcast(1.0f32 / (var + eps).sqrt());

    // Pass 3: normalise, scale, shift.
    let mut i = unit;
    while i < wv {
        let mut v = Vector::<f32, N>::cast_from(x[base + i]);
        if add_residual {
            v += Vector::<f32, N>::cast_from(residual[base + i]);
        }
        let g = Vector::<f32, N>::cast_from(gamma[i]);
        let b = Vector::<f32, N>::cast_from(beta[i]);
        out[base + i] = Vector::cast_from((v - mean_v) * inv * g + b);
        i += UNITS as usize;
    }
}

/// The sum of every unit's `value` over the workgroup (a tree in shared memory), on every unit.
#[cube]
fn workgroup_sum(partial: &mut Shared<[f32]>, value: f32, unit: usize) -> f32 {
    sync_cube();
    partial[unit] = value;
    sync_cube();
    #[unroll]
    for level in 0..6u32 {
        let stride = comptime!((UNITS as usize) >> (level + 1));
        if unit < stride {
            partial[unit] = partial[unit] + partial[unit + stride];
        }
        sync_cube();
    }
    partial[0]
}
