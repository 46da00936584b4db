//! The PanDerm image tower of DermLIP_PanDerm-base-w-PubMed-256: the CAE/BEiT-style ViT of the
//! Derm1M fork (`src/CAE/models/modeling_finetune.py` `VisionTransformer`, built by
//! `call_PanDerm_base_visual`). Unlike open_clip's ViT: the patch conv has a bias, positions are a
//! fixed 2-D sin-cos table, blocks have layer scale (`gamma_1/2`) and separate q/v biases (k bias
//! zero), LayerNorm eps is 1e-6, and pooling is `norm(mean(norm(x)[:, 1:]))` with the *same*
//! `norm` twice, followed by `head` (Linear with bias).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{ClipConfig, VisionConfig};
use crate::error::Result;
use crate::transformer::{layer_norm, load_layer_norm};
use crate::weights::WeightLoader;

pub const PANDERM_LAYER_NORM_EPS: f64 = 1e-6;
/// `init_values` of `call_PanDerm_base_visual`: the layer-scale start value.
const LAYER_SCALE_INIT: f64 = 0.1;

#[derive(Module, Debug)]
pub struct PanDermAttention {
    /// q, k and v in one `[d, 3d]` projection without bias.
    pub qkv: Linear,
    pub q_bias: Param<Tensor<1>>,
    pub v_bias: Param<Tensor<1>>,
    pub proj: Linear,
    pub heads: usize,
}

impl PanDermAttention {
    fn new(width: usize, heads: usize, device: &Device) -> Self {
        PanDermAttention {
            qkv: LinearConfig::new(width, 3 * width).with_bias(false).with_initializer(normal(0.02)).init(device),
            q_bias: Initializer::Zeros.init([width], device),
            v_bias: Initializer::Zeros.init([width], device),
            proj: LinearConfig::new(width, width).with_initializer(normal(0.02)).init(device),
            heads,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, width] = x.dims();
        let head_dim = width / self.heads;
        let q_bias = self.q_bias.val();
        let k_bias = q_bias.zeros_like();
        let bias = Tensor::cat(vec![q_bias, k_bias, self.v_bias.val()], 0).reshape([1, 1, 3 * width]);
        let qkv = token_linear(&self.qkv, x) + bias;
        let qkv = qkv.reshape([batch, seq, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
        let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<4>(0);
        let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<4>(0);
        let v = qkv.narrow(0, 2, 1).squeeze_dim::<4>(0);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = attention(q, k, v, None, None, options);
        token_linear(&self.proj, out.swap_dims(1, 2).reshape([batch, seq, width]))
    }

    fn load(&mut self, w: &mut WeightLoader, prefix: &str, width: usize) -> Result<()> {
        self.qkv.weight = w.linear_weight(&format!("{prefix}.qkv.weight"), width, 3 * width)?;
        self.q_bias = w.param(&format!("{prefix}.q_bias"), [width])?;
        self.v_bias = w.param(&format!("{prefix}.v_bias"), [width])?;
        load_linear(&mut self.proj, w, &format!("{prefix}.proj"), width, width, true)
    }
}

#[derive(Module, Debug)]
pub struct PanDermBlock {
    pub norm1: LayerNorm,
    pub attn: PanDermAttention,
    pub norm2: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub gamma_1: Param<Tensor<1>>,
    pub gamma_2: Param<Tensor<1>>,
}

impl PanDermBlock {
    fn new(v: &VisionConfig, device: &Device) -> Self {
        let (width, hidden) = (v.width, v.mlp_width);
        PanDermBlock {
            norm1: layer_norm(width, PANDERM_LAYER_NORM_EPS, device),
            attn: PanDermAttention::new(width, v.heads, device),
            norm2: layer_norm(width, PANDERM_LAYER_NORM_EPS, device),
            fc1: LinearConfig::new(width, hidden).with_initializer(normal(0.02)).init(device),
            fc2: LinearConfig::new(hidden, width).with_initializer(normal(0.02)).init(device),
            gamma_1: Initializer::Constant { value: LAYER_SCALE_INIT }.init([width], device),
            gamma_2: Initializer::Constant { value: LAYER_SCALE_INIT }.init([width], device),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let width = x.dims()[2];
        let gamma_1 = self.gamma_1.val().reshape([1, 1, width]);
        let gamma_2 = self.gamma_2.val().reshape([1, 1, width]);
        let x = x.clone() + gamma_1 * self.attn.forward(self.norm1.forward(x));
        let h = gelu(token_linear(&self.fc1, self.norm2.forward(x.clone())));
        x + gamma_2 * token_linear(&self.fc2, h)
    }

    fn load(&mut self, w: &mut WeightLoader, prefix: &str, v: &VisionConfig) -> Result<()> {
        let (width, hidden) = (v.width, v.mlp_width);
        load_layer_norm(&mut self.norm1, w, &format!("{prefix}.norm1"), width)?;
        self.attn.load(w, &format!("{prefix}.attn"), width)?;
        load_layer_norm(&mut self.norm2, w, &format!("{prefix}.norm2"), width)?;
        load_linear(&mut self.fc1, w, &format!("{prefix}.mlp.fc1"), width, hidden, true)?;
        load_linear(&mut self.fc2, w, &format!("{prefix}.mlp.fc2"), hidden, width, true)?;
        self.gamma_1 = w.param(&format!("{prefix}.gamma_1"), [width])?;
        self.gamma_2 = w.param(&format!("{prefix}.gamma_2"), [width])?;
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct PanDermVisionTransformer {
    pub patch_embed: Conv2d,
    /// `[width]` (`[1, 1, width]` in PyTorch).
    pub cls_token: Param<Tensor<1>>,
    /// `[1 + patches, width]` (`[1, 1 + patches, width]` in PyTorch); a fixed table, stored in
    /// the checkpoint and loaded from it like the other tensors.
    pub pos_embed: Param<Tensor<2>>,
    pub blocks: Vec<PanDermBlock>,
    pub norm: LayerNorm,
    pub head: Linear,
}

impl PanDermVisionTransformer {
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let v = &cfg.vision;
        let p = v.patch_size;
        let table = sincos_position_table(v.grid_size(), v.width);
        PanDermVisionTransformer {
            patch_embed: Conv2dConfig::new([3, v.width], [p, p]).with_stride([p, p]).init(device),
            cls_token: normal(0.02).init([v.width], device),
            pos_embed: Param::from_tensor(Tensor::from_data(
                TensorData::new(table, [v.num_positions(), v.width]),
                device,
            ))
            .set_require_grad(false),
            blocks: (0..v.layers).map(|_| PanDermBlock::new(v, device)).collect(),
            norm: layer_norm(v.width, PANDERM_LAYER_NORM_EPS, device),
            head: LinearConfig::new(v.width, cfg.embed_dim).with_initializer(normal(0.02 * 0.001)).init(device),
        }
    }

    /// `[batch, 3, size, size]` normalised images → unnormalised `[batch, embed_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.forward_features(images))
    }

    /// The `[batch, width]` feature before `head` (the paper's linear-probe feature, what the
    /// fork's `VisionTransformer_LP` returns).
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.patch_embed.forward(images); // [b, width, grid, grid]
        let [batch, width, gh, gw] = x.dims();
        let x = x.reshape([batch, width, gh * gw]).swap_dims(1, 2);
        let cls = self.cls_token.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let mut x = Tensor::cat(vec![cls, x], 1) + self.pos_embed.val().unsqueeze_dim::<3>(0);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        let seq = x.dims()[1];
        let pooled = x.narrow(1, 1, seq - 1).mean_dim(1).reshape([batch, width]);
        self.norm.forward(pooled)
    }

    pub fn load(&mut self, w: &mut WeightLoader, cfg: &ClipConfig) -> Result<()> {
        let v = &cfg.vision;
        let (width, p) = (v.width, v.patch_size);
        self.patch_embed.weight = w.param("visual.patch_embed.proj.weight", [width, 3, p, p])?;
        self.patch_embed.bias = Some(w.param("visual.patch_embed.proj.bias", [width])?);
        self.cls_token = Param::from_tensor(w.tensor("visual.cls_token", [1, 1, width])?.reshape([width]));
        let pos = w.tensor("visual.pos_embed", [1, v.num_positions(), width])?;
        self.pos_embed = Param::from_tensor(pos.reshape([v.num_positions(), width])).set_require_grad(false);
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.load(w, &format!("visual.blocks.{i}"), v)?;
        }
        load_layer_norm(&mut self.norm, w, "visual.norm", width)?;
        load_linear(&mut self.head, w, "visual.head", width, cfg.embed_dim, true)
    }
}

/// The CAE table `build_2d_sincos_position_embedding` (temperature 10⁴), row 0 (class token) zero.
/// Patch `m` (row-major) gets `[sin(r·ω), cos(r·ω), sin(c·ω), cos(c·ω)]` with `r = m / grid`,
/// `c = m % grid` (`meshgrid(grid_w, grid_h)` with "ij" indexing), `ω_k = 10000^(-k/(width/4))`;
/// computed in f32 like PyTorch.
pub fn sincos_position_table(grid: usize, width: usize) -> Vec<f32> {
    let quarter = width / 4;
    let omega: Vec<f32> = (0..quarter).map(|k| 1.0 / 10000f32.powf(k as f32 / quarter as f32)).collect();
    let mut out = vec![0f32; width]; // class token
    for m in 0..grid * grid {
        let (r, c) = ((m / grid) as f32, (m % grid) as f32);
        out.extend(omega.iter().map(|o| (r * o).sin()));
        out.extend(omega.iter().map(|o| (r * o).cos()));
        out.extend(omega.iter().map(|o| (c * o).sin()));
        out.extend(omega.iter().map(|o| (c * o).cos()));
        out.extend(std::iter::repeat_n(0.0, width - 4 * quarter));
    }
    out
}

fn normal(std: f64) -> Initializer {
    Initializer::Normal { mean: 0.0, std }
}

/// A linear layer over `[batch, seq, d]` as one `[batch·seq, d]` matmul.
pub(crate) fn token_linear(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let y = l.forward(x.reshape([batch * seq, d]));
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

/// `{prefix}.weight` (PyTorch `[out, in]`) and, when `bias`, `{prefix}.bias`.
pub(crate) fn load_linear(
    l: &mut Linear,
    w: &mut WeightLoader,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
) -> Result<()> {
    l.weight = w.linear_weight(&format!("{prefix}.weight"), d_in, d_out)?;
    l.bias = if bias { Some(w.param(&format!("{prefix}.bias"), [d_out])?) } else { None };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sincos_table_layout() {
        let t = sincos_position_table(2, 8);
        assert_eq!(t.len(), 5 * 8);
        assert!(t[..8].iter().all(|&x| x == 0.0));
        // Patch 1 = row 0, column 1: sin(0), cos(0) for rows; sin(1·ω), cos(1·ω) for columns.
        let p1 = &t[16..24];
        assert_eq!(&p1[..4], &[0.0, 0.0, 1.0, 1.0]);
        assert!((p1[4] - 1f32.sin()).abs() < 1e-7 && (p1[6] - 1f32.cos()).abs() < 1e-7);
    }
}
