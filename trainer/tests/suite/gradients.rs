//! The step's gradients against references: accumulation with cached features and data
//! parallelism over uneven shards give the single-batch gradient parameter by parameter (a naive
//! per-micro-batch loss does not: the negative control), and mixed precision follows the f32 loss
//! curve on the tiny model.

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use dermlip::input::tokenizer::{text_pad_id, TextIds};
use dermlip::{Clip, ModelFileConfig};
use dermlip_trainer::loss::clip_loss;
use dermlip_trainer::optim::{AdamW, Grads, OptimConfig};
use dermlip_trainer::step::{batch_gradients, materialize, Precision, Stepper};
use dermlip_trainer::synth::tiny_config_json;
use dermlip_trainer::train::text_tokenizer;

pub(crate) const SIZE: usize = 32;

/// The tiny CLIP (seeded) and `n` captioned images: distinct captions and pixel patterns.
fn setup(n: usize, seed: u64) -> (Clip, Device, Vec<f32>, TextIds) {
    setup_on(n, seed, Device::flex().autodiff())
}

pub(crate) fn setup_on(n: usize, seed: u64, device: Device) -> (Clip, Device, Vec<f32>, TextIds) {
    setup_sized(n, seed, device, SIZE)
}

/// [`setup_on`] with images of `size` pixels.
pub(crate) fn setup_sized(n: usize, seed: u64, device: Device, size: usize) -> (Clip, Device, Vec<f32>, TextIds) {
    let file_cfg = ModelFileConfig::from_json_str(&tiny_config_json(size as u32).to_string()).unwrap();
    let cfg = &file_cfg.model;
    let model = {
        let _turn = crate::rng_turn();
        device.seed(seed);
        let model = Clip::new(cfg, &device).init_parameters();
        materialize(&model);
        model
    };
    let tokenizer = text_tokenizer(cfg).unwrap();
    let words = ["red", "blue", "round", "dark", "small", "scaly", "flat", "raised", "brown", "pink", "pale", "large"];
    let ids: Vec<i32> = (0..n)
        .map(|i| format!("a {} {} lesion number {i}", words[i % words.len()], words[(i * 5 + 3) % words.len()]))
        .flat_map(|t| tokenizer.encode(&t).unwrap())
        .map(|i| i as i32)
        .collect();
    let tokens = TextIds::trimmed(&ids, n, text_pad_id(&cfg.text.arch));
    let pixels: Vec<f32> =
        (0..n * 3 * size * size).map(|i| (((i * 37 + (i / 977) * 11) % 101) as f32 / 50.0) - 1.0).collect();
    (model, device, pixels, tokens)
}

/// Largest relative difference between two gradients, parameter tensor by parameter tensor
/// (`‖a − b‖ / ‖a‖`), and the number of tensors.
pub(crate) fn worst_relative(a: &Grads, b: &Grads) -> (f64, usize) {
    let (a, b) = (a.to_vecs(), b.to_vecs());
    assert_eq!(a.len(), b.len(), "the same parameters get gradients");
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            let d: f64 = x.iter().zip(y).map(|(p, q)| (*p as f64 - *q as f64).powi(2)).sum::<f64>().sqrt();
            let n: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            d / n.max(1e-30)
        })
        .fold(0.0, f64::max);
    (worst, a.len())
}

/// open_clip `--accum-freq k` with cached features: k = 1, 2, 3, 4, 12 micro-batches of 12
/// samples (a global batch of 12k) give the single-batch gradient of every parameter to 1e-5
/// relative. Negative control: summing each micro-batch's own loss (negatives from the
/// micro-batch only) is far off.
#[test]
fn accumulated_gradient_equals_the_single_batch_gradient() {
    let micro = 12;
    for k in [1, 2, 3, 4, 12] {
        let n = micro * k;
        let (model, device, pixels, tokens) = setup(n, 11);
        let devices = [device.clone()];
        let (whole, loss1) = batch_gradients(std::slice::from_ref(&model), &devices, &pixels, &tokens, SIZE, 1);
        assert!(whole.len() > 20, "every parameter has a gradient: {}", whole.len());
        let (acc, loss) = batch_gradients(std::slice::from_ref(&model), &devices, &pixels, &tokens, SIZE, k);
        let (worst, count) = worst_relative(&whole, &acc);
        eprintln!("accum {k} x {micro}: worst relative gradient difference {worst:.2e} over {count} tensors");
        assert!(worst < 1e-5, "accum {k}: {worst}");
        assert!((loss - loss1).abs() < 1e-5 * loss1.abs(), "accum {k}: loss {loss} vs {loss1}");
        if k < 2 {
            continue;
        }
        // The naive variant: each micro-batch's loss over its own pairs, gradients summed.
        let per_img = 3 * SIZE * SIZE;
        let mut naive = Grads::default();
        for j in 0..k {
            let (a, b) = (j * micro, (j + 1) * micro);
            let img = Tensor::<4>::from_data(
                TensorData::new(pixels[a * per_img..b * per_img].to_vec(), [b - a, 3, SIZE, SIZE]),
                &device,
            );
            let loss = clip_loss(
                model.encode_image(img),
                model.encode_text(tokens.tensor_rows(a..b, &device)),
                model.logit_scale.val(),
            );
            naive.add(Grads::from_backward((loss / k as f64).backward(), &model));
        }
        let (worst, _) = worst_relative(&whole, &naive);
        eprintln!("  negative control (per-micro-batch loss): worst relative difference {worst:.2e}");
        assert!(worst > 1e-2, "accum {k}: the per-micro-batch loss must differ: {worst}");
    }
}

/// Data parallel over 2 and 3 (CPU) replicas with uneven shards (13 rows: 7/6, 5/4/4; with
/// accumulation the micro-batches split unevenly too) gives the single-device gradients.
#[test]
fn replicas_with_uneven_shards_give_the_single_device_gradient() {
    let n = 13;
    let (model, device, pixels, tokens) = setup(n, 12);
    let (one, loss1) = batch_gradients(std::slice::from_ref(&model), &[device.clone()], &pixels, &tokens, SIZE, 1);
    for (replicas, k) in [(2, 1), (3, 1), (2, 3), (3, 2)] {
        let devices = vec![device.clone(); replicas];
        let models: Vec<Clip> =
            std::iter::once(model.clone()).chain((1..replicas).map(|_| model.clone().fork(&device))).collect();
        let (g, loss) = batch_gradients(&models, &devices, &pixels, &tokens, SIZE, k);
        let (worst, count) = worst_relative(&one, &g);
        eprintln!("{replicas} replicas, accum {k}: worst relative difference {worst:.2e} over {count} tensors");
        assert!(worst < 1e-5, "{replicas} replicas, accum {k}: {worst}");
        assert!((loss - loss1).abs() < 1e-5 * loss1.abs());
    }
}

/// Data-parallel replicas are kept between steps and updated in place: over 4 AdamW steps with
/// 3 replicas (uneven shards, accumulation 2, gradient clipping on) every replica's weights stay
/// bit-equal to the trained model's (each applies the same reduced gradient with its own copy of
/// AdamW, forked from the trained model's optimiser after a first step on one device, as on
/// resume), and the losses and gradient norms follow the single-device steps. A replica that
/// missed an update, or an AdamW copy without the moments, would differ from the model.
#[test]
fn kept_replicas_follow_the_model_step_by_step() {
    let n = 11;
    let (model, device, pixels, tokens) = setup(n, 17);
    let run = |devices: &[Device]| -> Vec<(f64, f64)> {
        let mut m = model.clone();
        let cfg = OptimConfig { lr: 1e-3, warmup: 0, grad_clip_norm: Some(1.0), ..OptimConfig::default() };
        let mut optim = AdamW::new(cfg);
        // The first step on one device, as a resumed run's optimiser comes with moments and a
        // step count: the replicas' AdamW copies must start from them.
        let mut stepper = Stepper::new(std::slice::from_ref(&devices[0]), Precision::F32, SIZE, 2);
        let mut out = Vec::new();
        for step in 0..4 {
            if step == 1 {
                stepper = Stepper::new(devices, Precision::F32, SIZE, 2);
            }
            m = stepper.step(m.clone(), &mut optim, pixels.clone(), &tokens, 1e-3);
            let r = stepper.read(&m).unwrap();
            out.push((r.loss, r.grad_norm));
            let want = params(&m);
            assert_eq!(stepper.replicas().count(), if step == 0 { 0 } else { devices.len() - 1 });
            for (d, replica) in stepper.replicas().enumerate() {
                assert!(params(replica) == want, "replica {} differs from the model after step {step}", d + 1);
            }
        }
        assert_ne!(params(&m), params(&model), "the steps moved the weights");
        out
    };
    let one = run(std::slice::from_ref(&device));
    let three = run(&[device.clone(), device.clone(), device.clone()]);
    eprintln!("1 device {one:?}\n3 replicas {three:?}");
    for (a, b) in one.iter().zip(&three) {
        assert!((a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-4 * a.1, "{a:?} vs {b:?}");
    }
    assert!(one[3].0 < one[0].0, "the steps train: {one:?}");
}

/// Every float parameter of `m`, in module order, as f32 values.
pub(crate) fn params(m: &Clip) -> Vec<Vec<f32>> {
    struct V(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            self.0.push(p.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
        }
    }
    let mut v = V(Vec::new());
    m.visit(&mut v);
    v.0
}

/// Mixed precision on the tiny model: 100 steps with the towers in f16 (with the dynamic loss
/// scaler: its first steps overflow at 2¹⁶ and are skipped, as torch's GradScaler does) and in
/// bf16 follow the f32 loss curve. The curves are compared by AdamW steps taken (a skipped step
/// repeats the previous model): every loss within 0.01 + 3 % of f32's at the same AdamW step
/// (the loss starts near ln 16 ≈ 2.77 and falls to ~1e-3). Measured: see the test's output.
#[test]
fn amp_follows_the_f32_loss_curve_over_100_steps() {
    let n = 16;
    let (model, device, pixels, tokens) = setup(n, 13);
    // (AdamW steps taken before the step, loss of the step) for 100 steps.
    let curve = |precision: Precision| -> (Vec<(u64, f64)>, u64) {
        let mut m = model.clone();
        let mut optim = AdamW::new(OptimConfig { lr: 3e-4, warmup: 0, ..OptimConfig::default() });
        let mut stepper = Stepper::new(std::slice::from_ref(&device), precision, SIZE, 2);
        let mut out = Vec::new();
        let mut skips = 0;
        for _ in 0..100 {
            let t = optim.steps_taken();
            m = stepper.step(m.clone(), &mut optim, pixels.clone(), &tokens, 3e-4);
            let r = stepper.read(&m).unwrap();
            assert_eq!(r.nonfinite_total, 0, "{precision:?}: {r:?}");
            skips = r.scaler_skips;
            out.push((t, r.loss));
        }
        (out, skips)
    };
    let (f32_curve, _) = curve(Precision::F32);
    let f32_at = |t: u64| f32_curve[t as usize].1;
    assert!(f32_curve[99].1 < 0.5 * f32_curve[0].1, "the tiny model learns: {:?}", (f32_curve[0], f32_curve[99]));
    for dtype in [FloatDType::F16, FloatDType::BF16] {
        let (amp, skips) = curve(Precision::Amp(dtype));
        let worst = amp.iter().map(|&(t, l)| (l - f32_at(t)).abs() / (0.01 + 0.03 * f32_at(t))).fold(0.0, f64::max);
        let dmax = amp.iter().map(|&(t, l)| (l - f32_at(t)).abs()).fold(0.0, f64::max);
        eprintln!(
            "{dtype:?}: loss {:.4} -> {:.4} (f32 {:.4} -> {:.4}), {skips} loss-scaler skips; worst |Δloss| at the same \
             AdamW step {dmax:.4} ({:.0} % of the tolerance)",
            amp[0].1,
            amp[99].1,
            f32_curve[0].1,
            f32_curve[99].1,
            100.0 * worst
        );
        assert!(worst <= 1.0, "{dtype:?}: worst {worst} of the tolerance");
        assert!(amp.iter().zip(&f32_curve).any(|(a, b)| a.1 != b.1), "{dtype:?} really ran in half precision");
        if dtype == FloatDType::F16 {
            assert!(skips > 0, "2^16 overflows the tiny model's f16 gradients at first: the scaler must back off");
        }
    }
}

/// `--grad-checkpointing` (Burn's balanced strategy on the autodiff device) recomputes instead of
/// keeping: the same losses and gradient norms over 3 AdamW steps with accumulation 2.
#[test]
fn grad_checkpointing_gives_the_same_steps() {
    let run = |device: Device| -> Vec<(f64, f64)> {
        let (mut m, device, pixels, tokens) = setup_on(8, 14, device);
        let mut optim = AdamW::new(OptimConfig { lr: 1e-3, warmup: 0, ..OptimConfig::default() });
        let mut stepper = Stepper::new(std::slice::from_ref(&device), Precision::F32, SIZE, 2);
        (0..3)
            .map(|_| {
                m = stepper.step(m.clone(), &mut optim, pixels.clone(), &tokens, 1e-3);
                let r = stepper.read(&m).unwrap();
                (r.loss, r.grad_norm)
            })
            .collect()
    };
    let plain = run(Device::flex().autodiff());
    let ckpt = run(Device::flex().autodiff().gradient_checkpointing());
    eprintln!("plain {plain:?}\ncheckpointing {ckpt:?}");
    for (a, b) in plain.iter().zip(&ckpt) {
        assert!((a.0 - b.0).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-4 * a.1, "{a:?} vs {b:?}");
    }
    assert!(plain[2].0 < plain[0].0, "the steps train: {plain:?}");
}

/// The loader's `u8` pixels, normalised on the device, give the step that the host-normalised
/// f32 pixels give (`dermlip::input::preprocess::normalize`, the inference path's reference) —
/// on one device and sharded over two replicas with accumulation (each replica gets its rows).
#[test]
fn u8_pixels_normalised_on_the_device_give_the_f32_step() {
    use dermlip::input::preprocess::{normalize, PreprocessConfig};
    use dermlip_trainer::pixels::HostPixels;
    let n = 5;
    let (model, device, _, tokens) = setup(n, 21);
    let pre = PreprocessConfig { size: SIZE as u32, ..PreprocessConfig::default() };
    let plane = SIZE * SIZE;
    let bytes: Vec<u8> = (0..n * 3 * plane).map(|i| ((i * 73 + i / 97) % 256) as u8).collect();
    // The host reference, image by image (CHW planes back to an RGB image).
    let host: Vec<f32> = bytes
        .chunks(3 * plane)
        .flat_map(|img| {
            let rgb = image::RgbImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
                let i = y as usize * SIZE + x as usize;
                image::Rgb([img[i], img[plane + i], img[2 * plane + i]])
            });
            normalize(&rgb, &pre)
        })
        .collect();
    let run = |devices: &[Device], pixels: HostPixels, k: usize| {
        let mut optim = AdamW::new(OptimConfig::default());
        let mut stepper = Stepper::new(devices, Precision::F32, SIZE, k);
        let m = stepper.step(model.clone(), &mut optim, pixels, &tokens, 1e-3);
        let r = stepper.read(&m).unwrap();
        (r.loss, r.grad_norm)
    };
    let u8_pixels = HostPixels::U8 { data: bytes, mean: pre.mean, std: pre.std };
    let want = run(std::slice::from_ref(&device), host.into(), 1);
    let one = run(std::slice::from_ref(&device), u8_pixels.clone(), 1);
    assert_eq!(one, want, "one device: bit-equal on the CPU");
    let two = run(&[device.clone(), device.clone()], u8_pixels, 2);
    assert!(
        (two.0 - want.0).abs() < 1e-5 && (two.1 - want.1).abs() < 1e-5 * want.1,
        "two replicas: {two:?} vs {want:?}"
    );
}
