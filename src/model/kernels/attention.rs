//! The fused attention kernel: softmax(q·kᵀ/√d)·v for every head in one pass, flash-style (an
//! online softmax over tiles of keys), read straight from the fused QKV projection's output and
//! written straight in the layout the out-projection reads, so neither the head split nor the
//! head merge is a copy through memory, and the scores never are either.
//!
//! A workgroup of 64 units serves 64 queries of one head of one image, one query per unit: the
//! unit keeps its query (scaled by 1/√d) and its output row in registers (f32). Keys and values
//! come through workgroup-shared tiles of 16 keys, loaded as vec4 by all units; for each tile a
//! unit computes its 16 scores, rescales what it has by exp(old max − new max) once, and adds the
//! tile's weighted values. The causal mask (the text tower) skips whole tiles past the block's
//! last query.

use cubecl::prelude::*;

/// Queries per workgroup (one per unit).
pub const BLOCK_Q: u32 = 64;
/// Keys per shared tile.
pub const BLOCK_K: usize = 16;
/// The vector width of every load and store (vec4).
pub const VEC: usize = 4;

/// `qkv` `[batch, seq, 3·width]` (q, k, v, each `heads × head_dim`, PyTorch's order), `out`
/// `[batch, queries, width]`: the attention of the first `queries` positions over all `seq`.
#[cube(launch)]
pub fn fused_attention_kernel<F: Float, N: Size>(
    qkv: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    seq: u32,
    queries: u32,
    width: u32,
    scale: f32,
    #[comptime] head_dim: usize,
    #[comptime] causal: bool,
    #[define(F)] _dtype: ElemType,
) {
    let hv = comptime!(head_dim / VEC); // vectors per head
    let seq = seq as usize;
    let queries = queries as usize;
    let wv = (width as usize) / VEC;
    let row_stride = 3 * wv;
    let head = CUBE_POS_Y as usize;
    let batch = CUBE_POS_Z as usize;
    let block0 = (CUBE_POS_X * BLOCK_Q) as usize;
    let unit = UNIT_POS_X as usize;
    let q_row = block0 + unit;
    let active = q_row < queries;
    let base = batch * seq * row_stride;
    let head_off = head * hv;
    let zero = Vector::<f32, N>::broadcast(0.0f32);
    let neg = f32::new(-3.0e38f32);

    let mut q = Array::<Vector<f32, N>>::new(hv);
    let mut o = Array::<Vector<f32, N>>::new(hv);
    let scale_v = Vector::<f32, N>::broadcast(scale);
    #[unroll]
    for d in 0..hv {
        let mut qd = zero;
        if active {
            qd = Vector::cast_from(qkv[base + q_row * row_stride + head_off + d]) * scale_v;
        }
        q[d] = qd;
        o[d] = zero;
    }
    let mut m = neg;
    let mut l = f32::new(0.0f32);

    let mut k_tile = Shared::<[Vector<f32, N>]>::new_slice(comptime!(BLOCK_K * head_dim / VEC));
    let mut v_tile = Shared::<[Vector<f32, N>]>::new_slice(comptime!(BLOCK_K * head_dim / VEC));
    let mut s = Array::<f32>::new(BLOCK_K);

    // Keys past the block's last query are masked for every unit of a causal block.
    let mut kv_end = seq;
    if causal {
        let last = block0 + (BLOCK_Q as usize);
        if last < seq {
            kv_end = last;
        }
    }
    let tile_len = comptime!(BLOCK_K * head_dim / VEC);
    let mut j0 = 0usize;
    while j0 < kv_end {
        let mut idx = unit;
        while idx < tile_len {
            let key = idx / hv;
            let d = idx % hv;
            let gk = j0 + key;
            let mut kd = zero;
            let mut vd = zero;
            if gk < seq {
                let at = base + gk * row_stride + head_off + d;
                kd = Vector::cast_from(qkv[at + wv]);
                vd = Vector::cast_from(qkv[at + 2 * wv]);
            }
            k_tile[idx] = kd;
            v_tile[idx] = vd;
            idx += BLOCK_Q as usize;
        }
        sync_cube();

        if active {
            let mut tile_max = m;
            #[unroll]
            for key in 0..BLOCK_K {
                let gk = j0 + key;
                let mut dot = zero;
                #[unroll]
                for d in 0..hv {
                    dot += q[d] * k_tile[key * hv + d];
                }
                let mut sc = neg;
                let mut valid = gk < seq;
                if causal {
                    valid = valid && gk <= q_row;
                }
                if valid {
                    sc = dot.extract(0usize) + dot.extract(1usize) + dot.extract(2usize) + dot.extract(3usize);
                    if sc > tile_max {
                        tile_max = sc;
                    }
                }
                s[key] = sc;
            }
            let alpha = (m - tile_max).exp();
            l *= alpha;
            let alpha_v = Vector::<f32, N>::broadcast(alpha);
            #[unroll]
            for d in 0..hv {
                o[d] = o[d] * alpha_v;
            }
            #[unroll]
            for key in 0..BLOCK_K {
                let mut p = f32::new(0.0f32);
                if s[key] > -1.0e38f32 {
                    p = (s[key] - tile_max).exp();
                }
                l += p;
                let p_v = Vector::<f32, N>::broadcast(p);
                #[unroll]
                for d in 0..hv {
                    o[d] += p_v * v_tile[key * hv + d];
                }
            }
            m = tile_max;
        }
        sync_cube();
        j0 += BLOCK_K;
    }

    if active {
        let inv = Vector::<f32, N>::broadcast(1.0f32 / l);
        let at = (batch * queries + q_row) * wv + head_off;
        #[unroll]
        for d in 0..hv {
            out[at + d] = Vector::cast_from(o[d] * inv);
        }
    }
}
