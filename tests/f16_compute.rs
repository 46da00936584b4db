//! Half-precision compute, the browser's default on GPUs with `shader-f16`: the same WGSL kernels
//! (with `enable f16`) on wgpu/lavapipe, against open_clip's float32 reference. A test binary of
//! its own because the device's float type is set once per process.

mod common;

use burn::tensor::{Device, FloatDType};
use common::*;
use dermlip::knowledge::zero_shot::{l2_normalize, logits, softmax};
use dermlip::DermLip;

#[test]
fn f16_compute_stays_close_to_open_clip() {
    let mut device =
        Device::wgpu_options().init().expect("no wgpu adapter: install mesa-vulkan-drivers (scripts/setup.sh does)");
    assert!(device.supports_dtype(FloatDType::F16), "this wgpu adapter has no f16 (lavapipe has)");
    device.configure(FloatDType::F16).expect("f16 before any tensor");
    // dermlip's kernels (src/model/kernels/), as the browser runs f16: storage f16, f32 accumulators.
    dermlip::model::kernels::set_enabled(true);
    let r = reference("tiny-gelu");
    let model = DermLip::load(&model_dir("tiny-gelu"), device).expect("tiny-gelu in f16");
    let zs = &r.zero_shot;
    let weights = model.zero_shot_weights(&zs.classnames, &zs.templates).expect("class weights in f16");
    let (images, _) = embed_reference_inputs(&model, &r);
    let (mut worst_cos, mut worst_prob) = (1f32, 0f32);
    for (i, (e, im)) in images.iter().zip(&r.images).enumerate() {
        let cos: f32 = l2_normalize(e).iter().zip(l2_normalize(&im.embedding)).map(|(a, b)| a * b).sum();
        assert!(cos >= 0.9995, "{}: cosine {cos} to open_clip's f32 embedding", im.file);
        let probs = softmax(&logits(e, &weights));
        let d = max_abs_diff(&probs, &zs.probs[i]);
        assert!(d <= 2.5e-2, "{}: max |Δprob| {d:e}", im.file);
        // The fixture images have top-1/top-2 margins over 0.15: f16 must not flip them.
        assert_eq!(argmax(&probs), zs.top1[i], "{}: top-1 (margin {})", im.file, zs.margin[i]);
        worst_cos = worst_cos.min(cos);
        worst_prob = worst_prob.max(d);
    }
    println!(
        "f16 compute vs open_clip f32: {} images, min cosine {worst_cos:.6}, max |Δprob| {worst_prob:.2e}",
        images.len()
    );
}
