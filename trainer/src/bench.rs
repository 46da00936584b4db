//! Training-throughput benchmark (not a test): the training loop's own step ([`Stepper`]: forward
//! + backward + AdamW, data parallel, mixed precision, activation checkpointing as configured) on
//! random inputs at a fixed batch, no data loading, as `benches/open_clip_train_throughput.py`
//! does in PyTorch. Reports samples/s and the resident-memory growth per sample (peak RSS from
//! `/proc/self/status`: host memory, which is the device memory of the CPU backend; run one
//! configuration per process, the peak is the process's).

use std::time::Instant;

use dermlip::config::ModelFileConfig;
use dermlip::input::tokenizer::TextIds;
use dermlip::Clip;
use serde::Serialize;

use crate::optim::{AdamW, OptimConfig};
use crate::pixels::HostPixels;
use crate::rng::Rng;
use crate::step::{materialize, Precision, Stepper};
use crate::train::{autodiff_devices, describe_device, pick_devices};

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub framework: String,
    pub device: String,
    /// The adapter ([`describe_device`]).
    pub adapter: String,
    pub devices: usize,
    pub precision: String,
    pub grad_checkpointing: bool,
    pub batch: usize,
    pub accum_freq: usize,
    pub steps: usize,
    pub step_ms: f64,
    pub samples_per_s: f64,
    pub peak_rss_mib: f64,
    pub mib_per_sample: f64,
    /// The loss of the last step (finite: the step really ran).
    pub loss: f64,
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub device: String,
    pub num_devices: usize,
    pub precision: String,
    pub grad_checkpointing: bool,
    pub batch: usize,
    pub accum_freq: usize,
    pub warmup: usize,
    pub steps: usize,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub fn run(file_cfg: &ModelFileConfig, o: &BenchOptions) -> Result<BenchResult, String> {
    let cfg = &file_cfg.model;
    let base = pick_devices(&o.device, o.num_devices)?;
    let precision = Precision::resolve(&o.precision, &o.device, &base[0])?;
    let devices = autodiff_devices(&base, o.grad_checkpointing);
    devices[0].seed(0);
    let base_rss = peak_rss_mib();
    let mut model = Clip::new(cfg, &devices[0]).init_parameters();
    materialize(&model);
    let mut optim = AdamW::new(OptimConfig::default());
    let size = cfg.vision.image_size;
    let ctx = cfg.text.context_length;
    let mut rng = Rng::derive(&[0xbe, o.batch as u64]);
    // u8 pixels as the loader delivers them (uploaded and normalised on the device, as in
    // training) and non-padding ids inside the vocabulary; every caption uses the whole context
    // (the worst case for the text tower).
    let data: Vec<u8> = (0..o.batch * 3 * size * size).map(|_| rng.next_u64() as u8).collect();
    let pre = &file_cfg.preprocess;
    let pixels = HostPixels::U8 { data, mean: pre.mean, std: pre.std };
    let top = (cfg.text.vocab_size as u64 - 1).min(49_000);
    let ids: Vec<i32> = (0..o.batch * ctx).map(|_| 1 + (rng.next_u64() % (top - 1)) as i32).collect();
    let tokens = TextIds { ids, rows: o.batch, len: ctx };
    let mut stepper = Stepper::new(&devices, precision, size, o.accum_freq).for_backend(&o.device);
    let mut timed = 0.0;
    let mut loss = f64::NAN;
    for i in 0..o.warmup + o.steps {
        let t = Instant::now();
        model = stepper.step(model, &mut optim, pixels.clone(), &tokens, 1e-5);
        // Wait for the device (the training loop reads back only every log_every steps).
        loss = stepper.read(&model).map_or(f64::NAN, |r| r.loss);
        if i >= o.warmup {
            timed += t.elapsed().as_secs_f64();
        }
    }
    let step = timed / o.steps.max(1) as f64;
    let peak = peak_rss_mib();
    Ok(BenchResult {
        framework: "dermlip (Burn 0.22.1)".into(),
        device: o.device.clone(),
        adapter: describe_device(&o.device, &base[0]),
        devices: devices.len(),
        precision: precision.label().into(),
        grad_checkpointing: o.grad_checkpointing,
        batch: o.batch,
        accum_freq: o.accum_freq,
        steps: o.steps,
        step_ms: step * 1e3,
        samples_per_s: o.batch as f64 / step,
        peak_rss_mib: peak,
        mib_per_sample: (peak - base_rss) / o.batch as f64,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark runs the training loop's step (u8 pixels, 2 replicas, accumulation) and
    /// reports a real loss: finite and positive (random pairs at the initial logit scale 1/0.07
    /// give anything from about ln 6 up; Burn's CPU RNG is shared with the concurrent tests).
    #[test]
    fn bench_runs_the_training_step_on_the_tiny_model() {
        let file_cfg = ModelFileConfig::from_json_str(&crate::synth::tiny_config_json(32).to_string()).unwrap();
        let o = BenchOptions {
            device: "flex".into(),
            num_devices: 2,
            precision: "f32".into(),
            grad_checkpointing: false,
            batch: 6,
            accum_freq: 2,
            warmup: 0,
            steps: 1,
        };
        let r = run(&file_cfg, &o).unwrap();
        assert_eq!((r.devices, r.batch, r.accum_freq), (2, 6, 2));
        assert!(r.loss.is_finite() && r.loss > 0.0 && r.step_ms > 0.0 && r.samples_per_s > 0.0, "{r:?}");
    }
}
