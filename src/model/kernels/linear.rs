//! The fused linear kernel: `act(x · w + b)` in one pass, the bias and the activation applied to
//! the accumulators before the single write (the epilogue), as onnxruntime-web's and TF.js's
//! WebGPU `MatMul` do.
//!
//! Tiling (the shape of TF.js's `matmul_packed` vec4 kernel): a workgroup of 8×8 units computes a
//! 32×32 tile of the output; each unit keeps 4 rows × one vec4 of columns in registers. The K axis
//! is walked 32 at a time through two workgroup-shared tiles (32×32 of `x`, 32×32 of `w`), loaded
//! as vec4 by all 64 units, so every element read from memory is used 32 times from shared memory.
//! Accumulation is in f32 whatever the storage type (f16 on WebGPU with `shader-f16`): the shared
//! tiles hold f32, cast once when a tile is loaded.

use cubecl::prelude::*;

/// Output rows, output columns and K elements per workgroup tile.
pub const TILE: u32 = 32;
/// Units per workgroup along each axis (8×8 units, 4×4 outputs each).
pub const UNITS: u32 = 8;
/// The vector width of every load and store (vec4).
pub const VEC: usize = 4;

/// The epilogue's activation, a comptime value of the kernel (one compiled variant per kind).
pub const ACT_NONE: u32 = 0;
/// open_clip's `nn.GELU()` (exact, erf).
pub const ACT_GELU: u32 = 1;
/// open_clip's `QuickGELU`: `x · σ(1.702 x)`.
pub const ACT_QUICK_GELU: u32 = 2;

/// `out[m, n] = act(Σ_k x[m, k] · w[k, n] + b[n])`; contiguous row-major `x` `[m, k]`, `w`
/// `[k, n]`, `b` `[n]` and `out` `[m, n]`, all read and written as vec4 (`k` and `n` multiples of 4).
#[cube(launch)]
pub fn fused_linear_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    w: &Tensor<Vector<F, N>>,
    b: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    m: u32,
    k: u32,
    n: u32,
    #[comptime] act: u32,
    #[define(F)] _dtype: ElemType,
) {
    // Vectors per tile row (32 / 4).
    let tile_vecs = comptime!((TILE as usize) / VEC);
    let tx = UNIT_POS_X as usize; // which vec4 of the tile's columns
    let ty = UNIT_POS_Y as usize; // which 4 rows of the tile
    let tid = ty * (UNITS as usize) + tx;
    let row0 = (CUBE_POS_Y * TILE) as usize;
    let colv0 = (CUBE_POS_X as usize) * tile_vecs;
    let m = m as usize;
    let k = k as usize;
    let n = n as usize;
    let kv = k / VEC; // vectors per row of x
    let nv = n / VEC; // vectors per row of w and out

    let mut a_tile = Shared::<[Vector<f32, N>]>::new_slice(comptime!((TILE as usize) * tile_vecs));
    let mut b_tile = Shared::<[Vector<f32, N>]>::new_slice(comptime!((TILE as usize) * tile_vecs));
    let zero = Vector::<f32, N>::broadcast(0.0f32);

    let mut acc0 = zero;
    let mut acc1 = zero;
    let mut acc2 = zero;
    let mut acc3 = zero;

    let mut k0 = 0usize;
    while k0 < k {
        // 256 vectors of each tile, 4 per unit.
        #[unroll]
        for i in 0..4usize {
            let idx = i * 64usize + tid;
            let r = idx / tile_vecs;
            let c = idx % tile_vecs;
            // x: row (row0 + r), vector (k0/4 + c)
            let grow = row0 + r;
            let gkv = k0 / VEC + c;
            let mut av = zero;
            if grow < m && gkv < kv {
                av = Vector::cast_from(x[grow * kv + gkv]);
            }
            a_tile[idx] = av;
            // w: row (k0 + r), vector (colv0 + c)
            let gk = k0 + r;
            let gnv = colv0 + c;
            let mut bv = zero;
            if gk < k && gnv < nv {
                bv = Vector::cast_from(w[gk * nv + gnv]);
            }
            b_tile[idx] = bv;
        }
        sync_cube();

        #[unroll]
        for kk in 0..8usize {
            let a0 = a_tile[(ty * 4usize) * tile_vecs + kk];
            let a1 = a_tile[(ty * 4usize + 1usize) * tile_vecs + kk];
            let a2 = a_tile[(ty * 4usize + 2usize) * tile_vecs + kk];
            let a3 = a_tile[(ty * 4usize + 3usize) * tile_vecs + kk];
            #[unroll]
            for t in 0..4usize {
                let bv = b_tile[(kk * 4usize + t) * tile_vecs + tx];
                acc0 += Vector::broadcast(a0.extract(t)) * bv;
                acc1 += Vector::broadcast(a1.extract(t)) * bv;
                acc2 += Vector::broadcast(a2.extract(t)) * bv;
                acc3 += Vector::broadcast(a3.extract(t)) * bv;
            }
        }
        sync_cube();
        k0 += TILE as usize;
    }

    let col = colv0 + tx;
    if col < nv {
        let bias = Vector::<f32, N>::cast_from(b[col]);
        let row = row0 + ty * 4usize;
        if row < m {
            out[row * nv + col] = Vector::cast_from(epilogue::<N>(acc0 + bias, act));
        }
        if row + 1usize < m {
            out[(row + 1usize) * nv + col] = Vector::cast_from(epilogue::<N>(acc1 + bias, act));
        }
        if row + 2usize < m {
            out[(row + 2usize) * nv + col] = Vector::cast_from(epilogue::<N>(acc2 + bias, act));
        }
        if row + 3usize < m {
            out[(row + 3usize) * nv + col] = Vector::cast_from(epilogue::<N>(acc3 + bias, act));
        }
    }
}

/// The activation of the epilogue, on f32.
#[cube]
fn epilogue<N: Size>(v: Vector<f32, N>, #[comptime] act: u32) -> Vector<f32, N> {
    if comptime!(act == ACT_GELU) {
        // 0.5 x (1 + erf(x / √2))
        let half = Vector::<f32, N>::broadcast(0.5f32);
        let one = Vector::<f32, N>::broadcast(1.0f32);
        let inv_sqrt2 = Vector::<f32, N>::broadcast(std::f32::consts::FRAC_1_SQRT_2);
        half * v * (one + Vector::erf(v * inv_sqrt2))
    } else if comptime!(act == ACT_QUICK_GELU) {
        // x / (1 + exp(-1.702 x))
        let one = Vector::<f32, N>::broadcast(1.0f32);
        let c = Vector::<f32, N>::broadcast(-1.702f32);
        v / (one + Vector::exp(v * c))
    } else {
        v
    }
}
