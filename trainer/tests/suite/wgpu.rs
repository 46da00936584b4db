//! The trainer on the wgpu backend (lavapipe in CI): whole-tensor sums that the gradient norm and
//! the loss rely on, and the synthetic mini-Derm1M run in mixed precision (f16 with loss scaling).

use burn::tensor::{DType, Device, Tensor, TensorData};
use dermlip_trainer::optim::sum_all;

use crate::trainer::{assert_learned, losses, mean, synth, tiny_config, train_alone};

/// The trainer's own wgpu device (Burn's wgpu runtime is initialised once per process).
fn wgpu() -> Device {
    dermlip_trainer::train::pick_device("wgpu").expect("install mesa-vulkan-drivers (scripts/setup.sh does)")
}

/// The run's log and `--bench` name the adapter; a CPU emulation (lavapipe in CI) is called one,
/// so a slow run on a machine whose GPU was not found says why.
#[test]
fn the_device_line_names_the_adapter() {
    use dermlip_trainer::train::describe_device;
    let device = wgpu();
    let name = device.identity().expect("wgpu names its adapter").name;
    let line = describe_device("wgpu", &device);
    assert!(line.starts_with(&format!("wgpu on {name}")), "{line}");
    let emulated = ["llvmpipe", "lavapipe", "SwiftShader"].iter().any(|s| name.contains(s));
    assert_eq!(line.contains("no GPU: a software adapter"), emulated, "{line}");
    assert_eq!(describe_device("cpu", &Device::flex()), "flex (the CPU)");
}

/// One batch's gradients on wgpu equal the CPU's, at the synthetic run's shapes (a batch of 32
/// images of 64 px, 16 px patches). Burn 0.22.1's `Conv2d` weight gradient on wgpu was 9–14× off
/// there (right for a batch of 8, and at 32 px), so the patch embedding is a matmul over the
/// unfolded patches (`dermlip::model::layers::patch_tokens`); with the conv, the synthetic run
/// on wgpu learned visibly slower (f32: loss 0.60× against 0.47× on the CPU from the same init).
#[test]
fn patch_embedding_gradient_on_wgpu_equals_the_cpus() {
    use burn::module::Module;
    use dermlip_trainer::step::batch_gradients;
    let size = 64;
    let (model, cpu, pixels, tokens) = crate::gradients::setup_sized(32, 11, Device::flex().autodiff(), size);
    let gpu = wgpu().autodiff();
    let (want, loss_cpu) = batch_gradients(std::slice::from_ref(&model), &[cpu], &pixels, &tokens, size, 1);
    let (got, loss_gpu) = batch_gradients(&[model.fork(&gpu)], &[gpu], &pixels, &tokens, size, 1);
    assert!((loss_cpu - loss_gpu).abs() < 1e-5 * loss_cpu, "loss {loss_cpu} vs {loss_gpu}");
    // Measured: at most 5e-4 (lavapipe's exp and division are not correctly rounded).
    let (worst, count) = crate::gradients::worst_relative(&want, &got);
    assert!(worst <= 5e-3, "the worst of {count} parameters' gradients differs by {worst:.2e} relative");
}

/// `sum_all` against f64 sums, at sizes on both sides of Burn 0.22.1's wgpu full-reduction bug
/// (from 262 133 elements its `sum()` drops the rest) and at the token embedding's size; an
/// infinity in the last element must come out infinite (it went unseen by the non-finite guard).
#[test]
fn whole_tensor_sums_on_wgpu_are_exact() {
    let device = wgpu();
    for n in [1usize, 4095, 4096, 4097, 262_132, 262_133, 1_000_000, 49_408 * 64 + 7] {
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 - 6.0 + 0.25).collect();
        let expected: f64 = v.iter().map(|&x| x as f64).sum();
        let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), (&device, DType::F32));
        let got = sum_all(t.clone()).into_scalar::<f32>() as f64;
        assert!((got - expected).abs() <= 1e-6 * expected.abs().max(1.0) + 1e-3, "n {n}: {got} vs {expected}");
        let plain = t.sum().into_scalar::<f32>() as f64;
        if (plain - expected).abs() > 1e-3 * expected.abs().max(1.0) {
            eprintln!("n {n}: Burn's whole-tensor sum on wgpu gives {plain}, expected {expected}");
        }
        let mut w = v;
        w[n - 1] = f32::INFINITY;
        let t = Tensor::<1>::from_data(TensorData::new(w, [n]), (&device, DType::F32));
        let s = sum_all(t.powi_scalar(2)).into_scalar::<f32>();
        assert!(s.is_infinite(), "n {n}: an infinite last element summed to {s}");
    }
}

/// The CI proof on a GPU backend: the tiny CLIP trained on the synthetic mini-Derm1M with
/// `--precision amp` on wgpu (f16 towers, dynamic loss scaling) learns and reaches the same
/// retrieval bars as the f32 CPU run, with no non-finite step.
#[test]
fn tiny_clip_learns_with_amp_on_wgpu() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let report = synth(&data);
    let mut cfg = tiny_config(&data, &tmp.path().join("run"));
    cfg.device = "wgpu".into();
    cfg.precision = "amp".into();
    cfg.epochs = EPOCHS;
    cfg.data.val_csv = Some(data.join("Derm1M_v2_validation.csv"));
    cfg.data.val_images = vec![data.join("zips")];
    let started = std::time::Instant::now();
    let out = train_alone(&cfg);
    let curve = losses(&cfg.output.join("metrics.jsonl"));
    let (first, last) = (mean(&curve[..10]), mean(&curve[curve.len() - 10..]));
    let (step, eval) = out.evals.last().expect("an evaluation at the last epoch end");
    eprintln!(
        "amp on wgpu: {} logged steps in {:.1} s; loss {first:.3} -> {last:.3}; loss scale {:?} after {} \
         overflows; eval @ {step}: {}",
        curve.len(),
        started.elapsed().as_secs_f64(),
        out.state.loss_scale,
        out.state.scaler_skips_total,
        eval.summary()
    );
    let scale = out.state.loss_scale.expect("f16 amp keeps a loss scale");
    assert!((1.0..=65536.0).contains(&scale), "loss scale {scale}");
    assert_eq!(out.state.nonfinite_total, 0, "non-finite steps");
    assert_learned(first, last, eval, report.val);
}

/// Fewer than the CPU run's 30: lavapipe is slow, and 20 epochs clear the same bars with a margin
/// (12 did so barely: i→t R@1 0.141 against 0.125).
const EPOCHS: usize = 20;

/// The loader's `u8` pixels unpacked and normalised on wgpu (packed four to an `i32` word) equal
/// the CPU's result — bit-equal to the host formula (`pixels` unit test) — to float rounding
/// (WGSL's division is not correctly rounded).
#[test]
fn u8_pixels_normalise_on_wgpu() {
    use dermlip_trainer::pixels::HostPixels;
    let pre = dermlip::input::preprocess::PreprocessConfig::default();
    let (rows, size) = (2, 9);
    let data: Vec<u8> = (0..rows * 3 * size * size).map(|i| ((i * 131 + i / 256) % 256) as u8).collect();
    let pixels = HostPixels::U8 { data, mean: pre.mean, std: pre.std };
    let read = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let want = read(pixels.clone().upload(rows, size, &Device::flex(), false));
    // Asking for page-locked memory, which wgpu does not have, uploads the same values.
    for pinned in [false, true] {
        let got = read(pixels.clone().upload(rows, size, &wgpu(), pinned));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "value {i}: {g} vs {w} (pinned {pinned})");
        }
    }
}

/// The kept replicas on wgpu (the lavapipe device twice, as the CPU tests repeat flex), with f16
/// amp: every replica takes the same update as the model — the reduced gradient, the norm, the
/// non-finite verdict and the loss scale copied to its device — and stays bit-equal to it over 6
/// steps: the loss scaler's first skipped steps (2¹⁶ overflows the tiny model's f16 gradients)
/// and the updates after them; the losses follow one device's.
#[test]
fn kept_replicas_follow_the_model_on_wgpu_with_amp() {
    use crate::gradients::{params, setup_on, SIZE};
    use burn::tensor::FloatDType;
    use dermlip_trainer::optim::{AdamW, OptimConfig};
    use dermlip_trainer::step::{Precision, Stepper};
    let (model, device, pixels, tokens) = setup_on(6, 23, wgpu().autodiff());
    let run = |devices: &[Device]| -> (Vec<f64>, u64) {
        let mut m = model.clone();
        let mut optim = AdamW::new(OptimConfig { lr: 1e-3, warmup: 0, ..OptimConfig::default() });
        let mut stepper = Stepper::new(devices, Precision::Amp(FloatDType::F16), SIZE, 2);
        let mut losses = Vec::new();
        let mut skips = 0;
        for step in 0..6 {
            m = stepper.step(m.clone(), &mut optim, pixels.clone(), &tokens, 1e-3);
            let r = stepper.read(&m).unwrap();
            losses.push(r.loss);
            skips = r.scaler_skips;
            let want = params(&m);
            for replica in stepper.replicas() {
                assert!(params(replica) == want, "the replica differs from the model after step {step}");
            }
        }
        (losses, skips)
    };
    let (one, skips_one) = run(std::slice::from_ref(&device));
    let (two, skips_two) = run(&[device.clone(), device.clone()]);
    eprintln!("1 device {one:?} ({skips_one} scaler skips)\n2 replicas {two:?} ({skips_two} scaler skips)");
    assert_eq!(skips_one, skips_two, "the loss scaler skips the same steps");
    assert!(skips_one < 5 && one[5] < one[0], "updates after the skips train: {one:?}");
    for (a, b) in one.iter().zip(&two) {
        assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{one:?} vs {two:?}");
    }
}
