//! dermlip's own GPU kernels (src/model/kernels/) against Burn's reference ops computed on the
//! CPU (flex), on native wgpu (lavapipe in CI): the model's shapes, odd edges, offset and
//! transposed inputs, every epilogue.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use dermlip::model::kernels::{attention_uses_own_kernel, linear, linear_reference, linear_uses_own_kernel, Epilogue};

use crate::common::wgpu_device;

/// The wgpu device, with dermlip's kernels switched on for this test's thread (natively they are
/// off by default).
fn gpu() -> Device {
    dermlip::model::kernels::set_enabled(true);
    wgpu_device()
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

fn to(device: &Device, t: &Tensor<2>) -> Tensor<2> {
    Tensor::from_data(t.to_data(), device)
}

/// The worst |kernel − reference| / (1 + |reference|) over all outputs.
fn check_linear(m: usize, k: usize, n: usize, act: Epilogue, what: &str) -> f32 {
    let cpu = Device::flex();
    let gpu = gpu();
    let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &cpu);
    let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0 / (k as f64).sqrt()), &cpu);
    let b = Tensor::<1>::random([n], Distribution::Normal(0.0, 0.5), &cpu);
    let want = values(linear_reference(x.clone(), w.clone(), Some(b.clone()), act));
    let (xg, wg) = (to(&gpu, &x), to(&gpu, &w));
    let bg = Tensor::<1>::from_data(b.to_data(), &gpu);
    assert!(linear_uses_own_kernel(&xg, &wg, Some(&bg)), "{what}: the kernel should apply to {m}×{k}·{k}×{n}");
    let got = values(linear(xg, wg, Some(bg), act));
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got.iter().zip(&want).map(|(g, r)| (g - r).abs() / (1.0 + r.abs())).fold(0f32, f32::max);
    assert!(worst <= 2e-5, "{what}: {m}×{k}·{k}×{n} {act:?}: worst relative error {worst:e}");
    worst
}

#[test]
fn fused_linear_matches_burn_on_the_model_shapes() {
    // ViT-B/16 (197 tokens, width 768, MLP 3072), its class-token-only last block, the text
    // tower (77 tokens, width 512) and a batch of 8 images.
    let shapes = [
        (197, 768, 2304, Epilogue::None),
        (197, 768, 768, Epilogue::None),
        (197, 768, 3072, Epilogue::Gelu),
        (197, 3072, 768, Epilogue::None),
        (1, 768, 3072, Epilogue::Gelu),
        (77, 512, 1536, Epilogue::None),
        (77, 512, 2048, Epilogue::QuickGelu),
        (8 * 197, 768, 768, Epilogue::None),
    ];
    let mut worst = 0f32;
    for (m, k, n, act) in shapes {
        worst = worst.max(check_linear(m, k, n, act, "model shape"));
    }
    println!("fused linear vs Burn (flex), model shapes: worst relative error {worst:.2e}");
}

#[test]
fn fused_linear_matches_burn_on_edges() {
    // Rows, K and columns that are not multiples of the 32×32×32 tile, and the smallest ones.
    for (m, k, n) in [(1, 4, 4), (5, 36, 12), (33, 4, 100), (31, 100, 36), (64, 64, 64), (65, 33 * 4, 33 * 4)] {
        for act in [Epilogue::None, Epilogue::Gelu, Epilogue::QuickGelu] {
            check_linear(m, k, n, act, "edge shape");
        }
    }
}

#[test]
fn fused_linear_reads_offset_and_transposed_inputs() {
    let cpu = Device::flex();
    let gpu = gpu();
    let big = Tensor::<2>::random([50, 64], Distribution::Normal(0.0, 1.0), &cpu);
    let w = Tensor::<2>::random([64, 24], Distribution::Normal(0.0, 0.2), &cpu);
    let b = Tensor::<1>::random([24], Distribution::Normal(0.0, 0.5), &cpu);
    let bg = Tensor::<1>::from_data(b.to_data(), &gpu);
    // Rows 3..40 (an offset into the buffer), and a transposed weight made contiguous by the kernel.
    let x = big.clone().narrow(0, 3, 37);
    let want = values(linear_reference(x.clone(), w.clone(), Some(b.clone()), Epilogue::Gelu));
    let xg = to(&gpu, &big).narrow(0, 3, 37);
    let wg_t = to(&gpu, &w.clone().transpose()).transpose();
    let got = values(linear(xg, wg_t, Some(bg), Epilogue::Gelu));
    let worst = got.iter().zip(&want).map(|(g, r)| (g - r).abs() / (1.0 + r.abs())).fold(0f32, f32::max);
    assert!(worst <= 2e-5, "offset/transposed inputs: worst relative error {worst:e}");
}

#[test]
fn fused_linear_stays_off_where_it_does_not_apply() {
    let cpu = Device::flex();
    let gpu = gpu();
    let x = Tensor::<2>::from_data(TensorData::new(vec![1f32; 6], [2, 3]), &gpu);
    let w = Tensor::<2>::from_data(TensorData::new(vec![1f32; 12], [3, 4]), &gpu);
    let b = Tensor::<1>::from_data(TensorData::new(vec![1f32; 4], [4]), &gpu);
    // K = 3 is not a multiple of the vec4 loads: Burn's ops, same answer.
    assert!(!linear_uses_own_kernel(&x, &w, Some(&b)));
    assert_eq!(values(linear(x, w, Some(b), Epilogue::None)), vec![4f32; 8]);
    // The CPU engine and autodiff (training) never take it.
    let xc = Tensor::<2>::ones([4, 4], &cpu);
    let wc = Tensor::<2>::ones([4, 4], &cpu);
    let bc = Tensor::<1>::ones([4], &cpu);
    assert!(!linear_uses_own_kernel(&xc, &wc, Some(&bc)));
    let ad = gpu.clone().autodiff();
    let xa = Tensor::<2>::ones([4, 4], &ad);
    let wa = Tensor::<2>::ones([4, 4], &ad);
    let ba = Tensor::<1>::ones([4], &ad);
    assert!(!linear_uses_own_kernel(&xa, &wa, Some(&ba)));
    // Switched off: Burn's ops on the GPU too.
    let x = Tensor::<2>::ones([4, 4], &gpu);
    let w = Tensor::<2>::ones([4, 4], &gpu);
    let b = Tensor::<1>::ones([4], &gpu);
    assert!(linear_uses_own_kernel(&x, &w, Some(&b)));
    dermlip::model::kernels::set_enabled(false);
    assert!(!linear_uses_own_kernel(&x, &w, Some(&b)));
    assert!(!attention_uses_own_kernel(&Tensor::<3>::ones([1, 4, 12], &gpu), 1, 4));
}

/// The model's own attention path with Burn's ops (split heads, `module::attention`, merge).
fn attention_reference(qkv: Tensor<3>, heads: usize, queries: usize, causal: bool) -> Tensor<3> {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    let [batch, _, fused] = qkv.dims();
    let (q, k, v) = dermlip::model::layers::split_qkv(qkv, heads, Some(queries));
    let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
    attention(q, k, v, None, None, options).swap_dims(1, 2).reshape([batch, queries, fused / 3])
}

fn check_attention(batch: usize, seq: usize, heads: usize, head_dim: usize, queries: usize, causal: bool) -> f32 {
    let cpu = Device::flex();
    let gpu = gpu();
    let qkv = Tensor::<3>::random([batch, seq, 3 * heads * head_dim], Distribution::Normal(0.0, 1.0), &cpu);
    let want = values3(attention_reference(qkv.clone(), heads, queries, causal));
    let qkv_gpu = Tensor::<3>::from_data(qkv.to_data(), &gpu);
    let what = format!("attention {batch}×{seq}, {heads}×{head_dim}, {queries} queries, causal {causal}");
    assert!(attention_uses_own_kernel(&qkv_gpu, heads, queries), "{what}: the kernel should apply");
    let got = values3(dermlip::model::kernels::attention(qkv_gpu, heads, queries, causal));
    assert_eq!(got.len(), want.len(), "{what}");
    let worst = got.iter().zip(&want).map(|(g, r)| (g - r).abs() / (1.0 + r.abs())).fold(0f32, f32::max);
    assert!(worst <= 2e-5, "{what}: worst relative error {worst:e}");
    worst
}

fn values3(t: Tensor<3>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

#[test]
fn fused_attention_matches_burn_on_the_model_shapes() {
    let mut worst = 0f32;
    // ViT-B/16 (197 tokens, 12 heads of 64), its class-token-only last block, the text tower
    // (77 tokens, 8 heads of 64, causal), two images.
    for (batch, seq, heads, head_dim, queries, causal) in [
        (1, 197, 12, 64, 197, false),
        (1, 197, 12, 64, 1, false),
        (1, 77, 8, 64, 77, true),
        (2, 197, 12, 64, 197, false),
    ] {
        worst = worst.max(check_attention(batch, seq, heads, head_dim, queries, causal));
    }
    println!("fused attention vs Burn (flex), model shapes: worst relative error {worst:.2e}");
}

#[test]
fn fused_attention_matches_burn_on_edges() {
    // Sequences shorter than, equal to and one past a key tile and a query block; small heads.
    for (batch, seq, heads, head_dim, queries, causal) in [
        (1, 1, 1, 4, 1, false),
        (2, 5, 3, 8, 5, true),
        (1, 16, 2, 16, 16, false),
        (1, 17, 2, 16, 3, false),
        (3, 65, 1, 32, 65, true),
        (1, 130, 4, 128, 130, false),
    ] {
        check_attention(batch, seq, heads, head_dim, queries, causal);
    }
}

#[test]
fn fused_layer_norm_matches_burn() {
    use burn::nn::LayerNormConfig;
    use dermlip::model::kernels::{add_layer_norm, layer_norm, layer_norm_uses_own_kernel};
    let cpu = Device::flex();
    let gpu = gpu();
    // ViT-B/16's 197 rows of 768 (eps 1e-5), the text tower's 77 × 512, BERT's 1e-12, PanDerm's
    // 1e-6, a single row, widths of one vec4 and of one unit's stride, an offset mean.
    for (rows, width, eps, shift) in [
        (197, 768, 1e-5, 0.0),
        (77, 512, 1e-5, 0.0),
        (3, 768, 1e-12, 0.0),
        (1, 768, 1e-6, 0.0),
        (5, 4, 1e-5, 0.0),
        (9, 256, 1e-5, 0.0),
        (197, 768, 1e-5, 100.0),
    ] {
        let what = format!("layer norm {rows}×{width}, eps {eps:e}, mean {shift}");
        let x = Tensor::<2>::random([rows, width], Distribution::Normal(shift, 2.0), &cpu);
        let r = Tensor::<2>::random([rows, width], Distribution::Normal(0.0, 1.0), &cpu);
        let mut ln = LayerNormConfig::new(width).with_epsilon(eps).init(&cpu);
        ln.gamma = burn::module::Param::from_tensor(Tensor::random([width], Distribution::Normal(1.0, 0.3), &cpu));
        ln.beta = Some(burn::module::Param::from_tensor(Tensor::random([width], Distribution::Normal(0.0, 0.3), &cpu)));
        let want = values(ln.forward(x.clone()));
        let want_sum = values(x.clone() + r.clone());
        let want_add = values(ln.forward(x.clone() + r.clone()));
        let g = Tensor::<1>::from_data(ln.gamma.val().to_data(), &gpu);
        let b = Tensor::<1>::from_data(ln.beta.as_ref().unwrap().val().to_data(), &gpu);
        let (xg, rg) = (to(&gpu, &x), to(&gpu, &r));
        assert!(layer_norm_uses_own_kernel(&xg, &g, &b), "{what}: the kernel should apply");
        // Rows around 100 lose digits to f32 in x − mean itself (ulp(100) / σ ≈ 4e-6 each), in
        // both computations: a looser bound there.
        let tol = if shift == 0.0 { 2e-5 } else { 1e-4 };
        let close = |got: Vec<f32>, want: &[f32], part: &str| {
            let worst = got.iter().zip(want).map(|(g, r)| (g - r).abs() / (1.0 + r.abs())).fold(0f32, f32::max);
            assert!(worst <= tol, "{what} ({part}): worst relative error {worst:e}");
        };
        close(values(layer_norm(xg.clone(), g.clone(), b.clone(), eps)), &want, "norm");
        let (sum, normed) = add_layer_norm(xg, rg, g, b, eps);
        close(values(sum), &want_sum, "x + r");
        close(values(normed), &want_add, "norm of x + r");
    }
}
