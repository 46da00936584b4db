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
    /// Optimiser steps taken (torch's `state["step"]`, shared: every parameter gets a gradient),
    /// kept on the device as a `[1]` f32 tensor: a step skipped on the device (non-finite
    /// gradients) does not count, and nobody waits for the answer. [`AdamW::steps_taken`] reads it.
    step: Option<Tensor<1>>,
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

    /// Every gradient times `factor` (a `[1]` tensor on the gradients' device).
    pub fn scale(self, factor: &Tensor<1>) -> Self {
        Grads { map: self.map.into_iter().map(|(id, (i, g))| (id, (i, g * factor.clone()))).collect() }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The gradients as f32 vectors in module order (tests compare them parameter by parameter).
    pub fn to_vecs(&self) -> Vec<Vec<f32>> {
        let mut parts: Vec<&(usize, Tensor<1>)> = self.map.values().collect();
        parts.sort_by_key(|(i, _)| *i);
        parts.into_iter().map(|(_, g)| g.clone().into_data().convert::<f32>().try_to_vec::<f32>().unwrap()).collect()
    }

    /// `Σ ‖g‖²` over all gradients as a `[1]` tensor, summed in module order; nothing is read back.
    pub fn norm_squared(&self) -> Option<Tensor<1>> {
        let mut parts: Vec<&(usize, Tensor<1>)> = self.map.values().collect();
        parts.sort_by_key(|(i, _)| *i);
        parts.into_iter().map(|(_, g)| sum_all(g.clone().powi_scalar(2))).reduce(|a, b| a + b)
    }

    /// `sqrt(Σ ‖g‖²)` over all gradients (`torch.nn.utils.clip_grad_norm_`'s total norm). Reads
    /// the value back (waits for the device).
    pub fn global_norm(&self) -> f64 {
        self.norm_squared().map_or(0.0, |s| s.into_scalar::<f32>() as f64).sqrt()
    }
}

/// How the data-parallel replicas' gradients are summed (once per step; see [`all_reduce`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The fallback on every backend: each gradient is moved to `devices[0]`, summed there and
    /// copied back to every replica's device (`to_device`: through the host on wgpu, NCCL
    /// send/recv on CUDA). Device 0 moves 2(N−1) gradients.
    ViaMain,
    /// Burn's collective `all_reduce` (NCCL on CUDA, in place on each device; a ring moves about
    /// 2(N−1)/N of a gradient per device). Burn 0.22.1 implements it on CUDA only: on flex it
    /// is `unimplemented!` and on wgpu it panics ("no transport between its devices").
    Collective,
}

impl Reduction {
    /// The reduction `--device name` gets: the collective on CUDA, the fallback elsewhere.
    pub fn for_device(name: &str) -> Reduction {
        if name == "cuda" {
            Reduction::Collective
        } else {
            Reduction::ViaMain
        }
    }
}

/// The step's one reduction: every replica's accumulated gradients (`acc[d]` on `devices[d]`,
/// inner devices) summed, and the sum returned on every device (`out[d]` on `devices[d]`, the
/// same values everywhere, so each replica's AdamW applies the same update). Parameters are
/// reduced in module order, which is the same on every device (NCCL requires one order); a
/// replica without a gradient for a parameter (a shard with no rows) contributes zeros.
pub fn all_reduce(acc: Vec<Grads>, devices: &[Device], how: Reduction) -> Vec<Grads> {
    match how {
        Reduction::ViaMain => reduce_by_parameter(acc, devices, |parts| {
            let mut it = parts.into_iter();
            let mut total = it.next().expect("one part per device");
            for g in it {
                total = total + g.to_device(&devices[0]);
            }
            let copies: Vec<Tensor<1>> = devices[1..].iter().map(|d| total.clone().to_device(d)).collect();
            std::iter::once(total).chain(copies).collect()
        }),
        Reduction::Collective => {
            use burn::tensor::distributed::{all_reduce as collective, ReduceOperation};
            reduce_by_parameter(acc, devices, |parts| {
                // Every device's call is queued before any is resolved (each device's server
                // thread joins the NCCL group; resolving waits on the communication stream only).
                let pending: Vec<_> =
                    parts.into_iter().map(|g| collective(g, ReduceOperation::Sum, devices.to_vec())).collect();
                pending.into_iter().map(|c| c.resolve()).collect()
            })
        }
    }
}

/// [`all_reduce`]'s bookkeeping around `sum`, which takes one parameter's gradient from every
/// device (in device order) and returns the sum on every device.
fn reduce_by_parameter(
    acc: Vec<Grads>,
    devices: &[Device],
    mut sum: impl FnMut(Vec<Tensor<1>>) -> Vec<Tensor<1>>,
) -> Vec<Grads> {
    assert_eq!(acc.len(), devices.len(), "one gradient set per device");
    let mut maps: Vec<HashMap<ParamId, (usize, Tensor<1>)>> = acc.into_iter().map(|g| g.map).collect();
    if maps.len() == 1 {
        return maps.into_iter().map(|map| Grads { map }).collect();
    }
    // Module order: (index, id, numel) of every parameter that has a gradient anywhere.
    let mut order: BTreeMap<usize, (ParamId, usize)> = BTreeMap::new();
    for map in &maps {
        for (id, (i, g)) in map {
            order.entry(*i).or_insert((*id, g.dims()[0]));
        }
    }
    let mut out: Vec<HashMap<ParamId, (usize, Tensor<1>)>> = vec![HashMap::new(); maps.len()];
    for (i, (id, numel)) in order {
        let parts: Vec<Tensor<1>> = maps
            .iter_mut()
            .zip(devices)
            .map(|(map, dev)| map.remove(&id).map_or_else(|| Tensor::zeros([numel], dev), |(_, g)| g))
            .collect();
        for (o, g) in out.iter_mut().zip(sum(parts)) {
            o.insert(id, (i, g));
        }
    }
    out.into_iter().map(|map| Grads { map }).collect()
}

/// Row length of [`sum_all`]'s chunks, and the largest tensor it sums in one go.
const SUM_CHUNK: usize = 4096;

/// The sum of all elements of `t` as a `[1]` tensor, by rows of [`SUM_CHUNK`] (`sum_dim`) and a
/// sum of the row sums. Burn 0.22.1's whole-tensor `sum()` on wgpu drops elements past about
/// 65 533 × 4 (from 262 133 elements on, lavapipe: only the first 262 132 are summed, so an
/// infinite gradient in a large tensor, such as the last rows of the token embedding, went
/// unseen by the non-finite guard), while `sum_dim` is right at every size.
pub fn sum_all(t: Tensor<1>) -> Tensor<1> {
    let [n] = t.dims();
    if n <= SUM_CHUNK {
        return t.sum();
    }
    let rows = n / SUM_CHUNK;
    let head = t.clone().narrow(0, 0, rows * SUM_CHUNK).reshape([rows, SUM_CHUNK]).sum_dim(1).reshape([rows]);
    let head = sum_all(head);
    match n - rows * SUM_CHUNK {
        0 => head,
        tail => head + t.narrow(0, rows * SUM_CHUNK, tail).sum(),
    }
}

/// The per-step numbers of an update that stay on the device: whether to apply it, the factor
/// the gradients are multiplied by (clipping and loss-scale unscaling) and the learning rate.
struct Update {
    /// `[1]` bool: apply the update (false: a skipped step leaves weights and moments).
    ok: Tensor<1, burn::tensor::Bool>,
    /// `[1]`: multiplies every gradient.
    coef: Tensor<1>,
    /// `[1]`: `lr / (1 − β1ᵗ)`.
    step_size: Tensor<1>,
    /// `[1]`: `1 − β2ᵗ`.
    bc2: Tensor<1>,
}

struct StepMapper<'a> {
    path: Vec<String>,
    grads: &'a mut Grads,
    state: &'a mut HashMap<String, Moments>,
    cfg: &'a OptimConfig,
    lr: f64,
    update: &'a Update,
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
        // The parameter's device as it is (autodiff and its gradient-checkpointing strategy).
        let home = tensor.device();
        let require_grad = tensor.is_require_grad();
        let shape = tensor.dims();
        let numel: usize = shape.iter().product();
        let path = self.path.join(".");
        let u = self.update;
        let ok = u.ok.clone().expand([numel]);
        let p0 = tensor.inner().reshape([numel]);
        let g = grad.inner().reshape([numel]) * u.coef.clone();
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let wd = if no_weight_decay(&path, D) { 0.0 } else { self.cfg.weight_decay };
        let p = if wd != 0.0 { p0.clone() * (1.0 - self.lr * wd) } else { p0.clone() };
        let (m0, v0) = match self.state.remove(&path) {
            Some(s) => (s.m, s.v),
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m0.clone() * b1 + g.clone() * (1.0 - b1);
        let v = v0.clone() * b2 + g.powi_scalar(2) * (1.0 - b2);
        let denom = (v.clone() / u.bc2.clone()).sqrt() + self.cfg.eps;
        let p = p - (m.clone() / denom) * u.step_size.clone();
        // A skipped step (not `ok`) keeps the weights and the moments as they were.
        let p = p0.mask_where(ok.clone(), p);
        let m = m0.mask_where(ok.clone(), m);
        let v = v0.mask_where(ok, v);
        self.state.insert(path, Moments { m, v });
        let mut updated = crate::step::onto(p.reshape(shape), &home);
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

impl AdamW {
    pub fn new(cfg: OptimConfig) -> Self {
        AdamW { cfg, step: None, state: HashMap::new() }
    }

    /// Optimiser steps taken (reads the device's count back).
    pub fn steps_taken(&self) -> u64 {
        self.step.as_ref().map_or(0, |t| t.clone().into_scalar::<f32>() as u64)
    }

    /// One optimiser step with `grads` (already accumulated). Returns the global gradient norm
    /// before clipping (read back: this waits for the device; the training loop uses
    /// [`AdamW::step_on_device`]).
    pub fn step<M: Module>(&mut self, module: M, grads: Grads, lr: f64) -> (M, f64) {
        let Some(sq) = grads.norm_squared() else { return (module, 0.0) };
        let norm = (sq.clone().into_scalar::<f32>() as f64).sqrt();
        let device = sq.device();
        let one = Tensor::<1>::ones([1], &device).inner();
        let ok = one.clone().greater_elem(0.0);
        (self.step_on_device(module, grads, lr, sq, ok, one), norm)
    }

    /// One optimiser step without reading anything back. `norm_squared` is `Σ‖g‖²` of `grads`
    /// (a `[1]` tensor, before `unscale`), `ok` whether to apply the step at all (a skipped step
    /// changes neither the weights, the moments nor the step count), and every gradient is
    /// multiplied by `unscale` (`[1]`; the inverse loss scale of mixed precision, else 1) before
    /// the global-norm clipping of `grad_clip_norm`.
    pub fn step_on_device<M: Module>(
        &mut self,
        module: M,
        mut grads: Grads,
        lr: f64,
        norm_squared: Tensor<1>,
        ok: Tensor<1, burn::tensor::Bool>,
        unscale: Tensor<1>,
    ) -> M {
        // Everything here is bookkeeping outside the autodiff graph.
        let (norm_squared, ok, unscale) = (norm_squared.inner(), ok.inner(), unscale.inner());
        let device = norm_squared.device();
        let norm = norm_squared.sqrt() * unscale.clone();
        let coef = match self.cfg.grad_clip_norm {
            // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
            Some(max) => (norm + 1e-6).recip().mul_scalar(max).clamp_max(1.0) * unscale,
            None => unscale,
        };
        let t0 = self.step.take().unwrap_or_else(|| Tensor::zeros([1], &device));
        let t = t0.clone() + ok.clone().float();
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        // 1 − βᵗ on the device (t as f32: exact up to 2²⁴ steps).
        let bc1 = (t.clone() * b1.ln()).exp().neg() + 1.0;
        let bc2 = (t.clone() * b2.ln()).exp().neg() + 1.0;
        let update = Update { ok, coef, step_size: bc1.recip() * lr, bc2 };
        self.step = Some(t);
        let mut mapper = StepMapper {
            path: Vec::new(),
            grads: &mut grads,
            state: &mut self.state,
            cfg: &self.cfg,
            lr,
            update: &update,
        };
        module.map(&mut mapper)
    }

    /// A copy of the optimiser (moments and step count) on `device`: the AdamW of a data-parallel
    /// replica, which applies the same reduced gradient to its copy of the weights.
    pub fn fork(&self, device: &Device) -> AdamW {
        let inner = device.clone().inner();
        AdamW {
            cfg: self.cfg.clone(),
            step: self.step.as_ref().map(|t| t.clone().to_device(&inner)),
            state: self
                .state
                .iter()
                .map(|(p, s)| {
                    (p.clone(), Moments { m: s.m.clone().to_device(&inner), v: s.v.clone().to_device(&inner) })
                })
                .collect(),
        }
    }

    /// No moments yet (no step was queued).
    pub fn state_tensors_is_empty(&self) -> bool {
        self.state.is_empty()
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
        self.step = (step > 0).then(|| Tensor::from_data(TensorData::new(vec![step as f32], [1]), &inner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reduction's bookkeeping: parameters are summed in module order (NCCL needs the same
    /// order on every device), a replica without a parameter's gradient contributes zeros, and
    /// every device gets the sum, under the same `ParamId` and module index.
    #[test]
    fn reduction_sums_every_parameter_in_module_order_onto_every_device() {
        let dev = Device::flex();
        let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev);
        let (a, b, c) = (ParamId::new(), ParamId::new(), ParamId::new());
        // Module order: c (index 1), a (index 2), b (index 3); device 2 has no gradient for b.
        let grads = |parts: Vec<(ParamId, usize, Tensor<1>)>| Grads {
            map: parts.into_iter().map(|(id, i, g)| (id, (i, g))).collect(),
        };
        let acc = vec![
            grads(vec![(a, 2, t(&[1.0, 2.0])), (b, 3, t(&[10.0])), (c, 1, t(&[100.0, 0.5, 0.25]))]),
            grads(vec![(a, 2, t(&[3.0, 4.0])), (b, 3, t(&[20.0])), (c, 1, t(&[200.0, 0.5, 0.25]))]),
            grads(vec![(a, 2, t(&[5.0, 6.0])), (c, 1, t(&[300.0, 0.5, 0.5]))]),
        ];
        let devices = vec![dev.clone(); 3];
        let mut seen = Vec::new();
        let out = reduce_by_parameter(acc, &devices, |parts| {
            seen.push(parts.iter().map(|p| p.dims()[0]).collect::<Vec<_>>());
            let total = parts.into_iter().reduce(|x, y| x + y).unwrap();
            vec![total; 3]
        });
        assert_eq!(seen, vec![vec![3, 3, 3], vec![2, 2, 2], vec![1, 1, 1]], "module order: c, a, b");
        assert_eq!(out.len(), 3);
        for g in &out {
            assert_eq!(g.to_vecs(), vec![vec![600.0, 1.5, 1.0], vec![9.0, 12.0], vec![30.0]]);
            assert_eq!(g.map[&a].0, 2);
        }
        // The fallback through device 0 gives the same sums.
        let acc = vec![grads(vec![(a, 2, t(&[1.0, 2.0]))]), grads(vec![(a, 2, t(&[3.0, 4.0])), (b, 3, t(&[20.0]))])];
        let out = all_reduce(acc, &devices[..2], Reduction::ViaMain);
        for g in &out {
            assert_eq!(g.to_vecs(), vec![vec![4.0, 6.0], vec![20.0]]);
        }
        assert_eq!(Reduction::for_device("cuda"), Reduction::Collective);
        assert_eq!(Reduction::for_device("wgpu"), Reduction::ViaMain);
        assert_eq!(Reduction::for_device("flex"), Reduction::ViaMain);
    }

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
