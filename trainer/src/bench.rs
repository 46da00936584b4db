//! Training-throughput benchmark (not a test): forward + backward + AdamW on random inputs at a
//! fixed batch, no data loading, as `benches/open_clip_train_throughput.py` does in PyTorch.
//! Reports samples/s and the resident-memory growth per sample (CPU backends; peak RSS from
//! `/proc/self/status`).

use std::time::Instant;

use burn::tensor::{Distribution, Int, Tensor};
use dermlip::config::ModelFileConfig;
use dermlip::Clip;
use serde::Serialize;

use crate::loss::clip_loss;
use crate::optim::{AdamW, Grads, OptimConfig};
use crate::train::pick_device;

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub framework: String,
    pub device: String,
    pub batch: usize,
    pub steps: usize,
    pub step_ms: f64,
    pub samples_per_s: f64,
    pub peak_rss_mib: f64,
    pub mib_per_sample: f64,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub fn run(
    file_cfg: &ModelFileConfig,
    device_name: &str,
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Result<BenchResult, String> {
    let cfg = &file_cfg.model;
    let device = pick_device(device_name)?.autodiff();
    device.seed(0);
    let base_rss = peak_rss_mib();
    let mut model = Clip::new(cfg, &device).init_parameters();
    let mut optim = AdamW::new(OptimConfig::default());
    let size = cfg.vision.image_size;
    let ctx = cfg.text.context_length;
    let images = Tensor::<4>::random([batch, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    // Random non-padding ids inside the vocabulary (49 408 CLIP BPE, 30 522 PubMedBERT).
    let top = (cfg.text.vocab_size as f64 - 1.0).min(49_000.0);
    let ids = Tensor::<2, Int>::random([batch, ctx], Distribution::Uniform(1.0, top), &device);
    let mut timed = 0.0;
    for i in 0..warmup + steps {
        let t = Instant::now();
        let loss =
            clip_loss(model.encode_image(images.clone()), model.encode_text(ids.clone()), model.logit_scale.val());
        let grads = Grads::from_backward(loss.backward(), &model);
        let (m, _) = optim.step(model, grads, 1e-4);
        model = m;
        // Wait for the device: read one value back.
        let _ = model.logit_scale.val().into_scalar::<f32>();
        if i >= warmup {
            timed += t.elapsed().as_secs_f64();
        }
    }
    let step = timed / steps.max(1) as f64;
    let peak = peak_rss_mib();
    Ok(BenchResult {
        framework: "dermlip (Burn 0.22.1)".into(),
        device: device_name.into(),
        batch,
        steps,
        step_ms: step * 1e3,
        samples_per_s: batch as f64 / step,
        peak_rss_mib: peak,
        mib_per_sample: (peak - base_rss) / batch as f64,
    })
}
