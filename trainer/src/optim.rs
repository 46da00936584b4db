//! AdamW exactly as `torch.optim.AdamW` (decoupled decay `p ← p·(1 − lr·wd)`, bias-corrected
//! moments, `eps` added to `√v̂`), with open_clip's parameter groups, global-norm gradient clipping
//! (`torch.nn.utils.clip_grad_norm_`) and the warmup + cosine schedule of
//! `open_clip_train.scheduler.cosine_lr`.
//!
//! Written here rather than with `burn::optim::AdamW` because (1) Burn's clipping is per tensor,
//! (2) the state must be saved and restored bit-exactly by parameter *name* for `--resume` (the
//! model is rebuilt from an open_clip state dict with new `ParamId`s), and (3) the decay groups
//! follow open_clip's rule on names. Moments are kept flattened (`[numel]`), so one map holds
//! parameters of every rank.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Device, Gradients, Tensor, TensorData};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub warmup: usize,
    /// Global gradient-norm clip (`--grad-clip-norm`); none by default, as open_clip.
    pub grad_clip_norm: Option<f64>,
}

impl Default for OptimConfig {
    /// The Derm1M ViT-B/16 recipe (open_clip's AdamW betas/eps for ViT models).
    fn default() -> Self {
        OptimConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.1,
            warmup: 1000,
            grad_clip_norm: None,
        }
    }
}

/// open_clip `main.py` (identical in Derm1M's `src/main.py`): `exclude = p.ndim < 2 or
/// "bn"/"ln"/"bias"/"logit_scale" in name`, over the parameters with `requires_grad` (PanDerm's
/// fixed `pos_embed` is in no group: it is not trained at all). Burn names are equivalent for this
/// test (`ln_1.gamma` still holds `ln`, biases are `bias`, `q_bias`/`v_bias` hold `bias`, every
/// gain/bias/layer scale — LayerNorm, BERT `LayerNorm`, `gamma_1/2` — is 1-d in both). The one
/// rank that differs: PanDerm's `cls_token` is `[1, 1, width]` in PyTorch (decayed) and `[width]`
/// here. Note open_clip *does* decay the 2-d embeddings (`token_embedding`,
/// `positional_embedding`, BERT's word/position/token-type embeddings); only 1-d
/// `class_embedding` is excluded.
pub fn no_weight_decay(path: &str, rank: usize) -> bool {
    if path.ends_with("cls_token") {
        return false;
    }
    rank < 2 || path.contains("bn") || path.contains("ln") || path.contains("bias") || path.contains("logit_scale")
}

/// Every trainable parameter's module path and whether it is decayed (`!no_weight_decay`), in
/// module order; parameters without gradient (PanDerm's `pos_embed`) are left out.
pub fn decay_groups<M: Module>(module: &M) -> Vec<(String, bool)> {
    struct V {
        path: Vec<String>,
        out: Vec<(String, bool)>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                let path = self.path.join(".");
                let decay = !no_weight_decay(&path, D);
                self.out.push((path, decay));
            }
        }
    }
    let mut v = V { path: Vec::new(), out: Vec::new() };
    module.visit(&mut v);
    v.out
}

/// `open_clip_train.scheduler.cosine_lr` (step counts optimiser steps from 0).
pub fn cosine_lr(base_lr: f64, warmup: usize, total: usize, step: usize) -> f64 {
    if step < warmup {
        base_lr * (step + 1) as f64 / warmup as f64
    } else {
        let e = (step - warmup) as f64;
        let es = total.saturating_sub(warmup).max(1) as f64;
        0.5 * (1.0 + (std::f64::consts::PI * e / es).cos()) * base_lr
    }
}

struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

pub struct AdamW {
    pub cfg: OptimConfig,
    /// Optimiser steps taken (torch's `state["step"]`, shared: every parameter gets a gradient).
    pub step: u64,
    state: HashMap<String, Moments>,
}

/// Gradients by parameter, flattened to `[numel]` (Burn's `GradientsParams` lives behind the
/// `optim` feature, which the workspace does not enable).
#[derive(Default)]
pub struct Grads {
    /// Gradient and the parameter's position in module order (which orders the global-norm sum
    /// the same way in every process: `ParamId`s change when a checkpoint is re-loaded).
    map: HashMap<ParamId, (usize, Tensor<1>)>,
}

impl Grads {
    /// Takes the gradient of every parameter of `module` out of a backward pass.
    pub fn from_backward<M: Module>(mut grads: Gradients, module: &M) -> Self {
        Self::from_gradients(&mut grads, module)
    }

    /// As [`Grads::from_backward`], leaving the other modules' gradients (data-parallel replicas
    /// share one backward pass) in `grads`.
    pub fn from_gradients<M: Module>(grads: &mut Gradients, module: &M) -> Self {
        struct V<'a> {
            grads: &'a mut Gradients,
            out: HashMap<ParamId, (usize, Tensor<1>)>,
            index: usize,
        }
        impl ModuleVisitor for V<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.index += 1;
                if !param.is_require_grad() {
                    return;
                }
                if let Some(g) = param.val().grad_remove(self.grads) {
                    let n = g.shape().num_elements();
                    self.out.insert(param.id, (self.index, g.reshape([n])));
                }
            }
        }
        let mut v = V { grads, out: HashMap::new(), index: 0 };
        module.visit(&mut v);
        Grads { map: v.out }
    }

    /// Moves every gradient to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Grads { map: self.map.into_iter().map(|(id, (i, g))| (id, (i, g.to_device(device)))).collect() }
    }

    /// Gradient accumulation: `self += other`.
    pub fn add(&mut self, other: Grads) {
        for (id, (i, g)) in other.map {
            let sum = match self.map.remove(&id) {
                Some((_, a)) => a + g,
                None => g,
            };
            self.map.insert(id, (i, sum));
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `sqrt(Σ ‖g‖²)` over all gradients (`torch.nn.utils.clip_grad_norm_`'s total norm).
    pub fn global_norm(&self) -> f64 {
        let mut parts: Vec<&(usize, Tensor<1>)> = self.map.values().collect();
        parts.sort_by_key(|(i, _)| *i);
        let sum = parts.into_iter().map(|(_, g)| g.clone().powi_scalar(2).sum()).reduce(|a, b| a + b);
        sum.map_or(0.0, |s| s.into_scalar::<f32>() as f64).sqrt()
    }
}

struct StepMapper<'a> {
    path: Vec<String>,
    grads: &'a mut Grads,
    state: &'a mut HashMap<String, Moments>,
    cfg: &'a OptimConfig,
    lr: f64,
    grad_scale: f64,
    step: u64,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id: ParamId = param.id;
        let Some((_, grad)) = self.grads.map.remove(&id) else { return param };
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let path = self.path.join(".");
        let p = tensor.inner().reshape([numel]);
        let mut g = grad.inner().reshape([numel]);
        if self.grad_scale != 1.0 {
            g = g * self.grad_scale;
        }
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let t = self.step as i32;
        let wd = if no_weight_decay(&path, D) { 0.0 } else { self.cfg.weight_decay };
        let p = if wd != 0.0 { p * (1.0 - self.lr * wd) } else { p };
        let (m, v) = match self.state.remove(&path) {
            Some(s) => (s.m * b1 + g.clone() * (1.0 - b1), s.v * b2 + g.powi_scalar(2) * (1.0 - b2)),
            None => (g.clone() * (1.0 - b1), g.powi_scalar(2) * (1.0 - b2)),
        };
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let step_size = self.lr / bc1;
        let denom = (v.clone() / bc2).sqrt() + self.cfg.eps;
        let p = p - (m.clone() / denom) * step_size;
        self.state.insert(path, Moments { m, v });
        let mut updated = Tensor::from_inner(p.reshape(shape));
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl AdamW {
    pub fn new(cfg: OptimConfig) -> Self {
        AdamW { cfg, step: 0, state: HashMap::new() }
    }

    /// One optimiser step with `grads` (already accumulated). Returns the global gradient norm
    /// before clipping.
    pub fn step<M: Module>(&mut self, module: M, grads: Grads, lr: f64) -> (M, f64) {
        let norm = grads.global_norm();
        (self.step_with_norm(module, grads, lr, norm), norm)
    }

    /// As [`AdamW::step`], with the global norm of `grads` already computed.
    pub fn step_with_norm<M: Module>(&mut self, module: M, mut grads: Grads, lr: f64, norm: f64) -> M {
        let grad_scale = match self.cfg.grad_clip_norm {
            // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
            Some(max) => (max / (norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        self.step += 1;
        let mut mapper = StepMapper {
            path: Vec::new(),
            grads: &mut grads,
            state: &mut self.state,
            cfg: &self.cfg,
            lr,
            grad_scale,
            step: self.step,
        };
        module.map(&mut mapper)
    }

    /// Moments as named f32 tensors (`m.<path>`, `v.<path>`) for a checkpoint.
    pub fn state_tensors(&self) -> BTreeMap<String, TensorData> {
        let mut out = BTreeMap::new();
        for (path, s) in &self.state {
            out.insert(format!("m.{path}"), s.m.clone().into_data().convert_dtype(DType::F32));
            out.insert(format!("v.{path}"), s.v.clone().into_data().convert_dtype(DType::F32));
        }
        out
    }

    pub fn load_state_tensors(&mut self, tensors: BTreeMap<String, TensorData>, step: u64, device: &Device) {
        let inner = device.clone().inner();
        let mut m: HashMap<String, Tensor<1>> = HashMap::new();
        let mut v: HashMap<String, Tensor<1>> = HashMap::new();
        for (k, d) in tensors {
            if let Some(p) = k.strip_prefix("m.") {
                m.insert(p.to_string(), Tensor::from_data(d, &inner));
            } else if let Some(p) = k.strip_prefix("v.") {
                v.insert(p.to_string(), Tensor::from_data(d, &inner));
            }
        }
        self.state = m.into_iter().filter_map(|(p, m)| v.remove(&p).map(|v| (p, Moments { m, v }))).collect();
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule() {
        assert!((cosine_lr(1.0, 10, 100, 0) - 0.1).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 100, 9) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 100, 10) - 1.0).abs() < 1e-12);
        assert!(cosine_lr(1.0, 10, 100, 99) < 0.001);
    }

    #[test]
    fn decay_groups() {
        assert!(no_weight_decay("visual.ln_pre.gamma", 1));
        assert!(no_weight_decay("logit_scale", 1));
        assert!(no_weight_decay("visual.class_embedding", 1));
        assert!(!no_weight_decay("text.token_embedding.weight", 2));
        assert!(!no_weight_decay("visual.transformer.resblocks.0.attn.in_proj.weight", 2));
        // PanDerm / BERT (Burn paths).
        assert!(no_weight_decay("visual.PanDerm.blocks.0.gamma_1", 1));
        assert!(no_weight_decay("visual.PanDerm.blocks.0.attn.q_bias", 1));
        assert!(no_weight_decay("visual.PanDerm.blocks.0.norm1.gamma", 1));
        assert!(!no_weight_decay("visual.PanDerm.cls_token", 1));
        assert!(!no_weight_decay("visual.PanDerm.blocks.0.attn.qkv.weight", 2));
        assert!(no_weight_decay("text.Bert.layers.0.attention_norm.gamma", 1));
        assert!(!no_weight_decay("text.Bert.word_embeddings", 2));
        assert!(!no_weight_decay("text.Bert.proj_in.weight", 2));
    }
}
