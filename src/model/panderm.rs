//! The PanDerm image tower of DermLIP_PanDerm-base-w-PubMed-256: the CAE/BEiT-style ViT of the
//! Derm1M fork (`src/CAE/models/modeling_finetune.py` `VisionTransformer`, built by
//! `call_PanDerm_base_visual`). Unlike open_clip's ViT: the patch conv has a bias, positions are a
//! fixed 2-D sin-cos table, blocks have layer scale (`gamma_1/2`) and separate q/v biases (k bias
//! zero), LayerNorm eps is 1e-6, and pooling is `norm(mean(norm(x)[:, 1:]))` with the *same*
//! `norm` twice, followed by `head` (Linear with bias).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::config::{ClipConfig, VisionConfig};
use crate::error::{Error, Result};
use crate::model::kernels::{self, Epilogue};
use crate::model::layers::{
    init_random, init_zeros, layer_norm, normal, patch_tokens, split_qkv, token_linear, token_linear_act,
    token_linear_plus_bias, visit_layer_norm, visit_linear,
};
use crate::weights::TensorVisitor;

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
        let q_bias = self.q_bias.val();
        let k_bias = q_bias.zeros_like();
        let bias = Tensor::cat(vec![q_bias, k_bias, self.v_bias.val()], 0);
        let qkv = token_linear_plus_bias(&self.qkv, x, bias);
        if kernels::attention_uses_own_kernel(&qkv, self.heads, seq) {
            return token_linear(&self.proj, kernels::attention(qkv, self.heads, seq, false));
        }
        let (q, k, v) = split_qkv(qkv, self.heads, None);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
        let out = attention(q, k, v, None, None, options);
        token_linear(&self.proj, out.swap_dims(1, 2).reshape([batch, seq, width]))
    }

    /// `qkv` (no bias), `q_bias`, `v_bias`, `proj`.
    fn visit_tensors(&mut self, v: &mut impl TensorVisitor, prefix: &str) -> Result<()> {
        visit_linear(v, &format!("{prefix}.qkv"), &mut self.qkv, false)?;
        v.param(&format!("{prefix}.q_bias"), &mut self.q_bias)?;
        v.param(&format!("{prefix}.v_bias"), &mut self.v_bias)?;
        visit_linear(v, &format!("{prefix}.proj"), &mut self.proj, true)
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
        let h = token_linear_act(&self.fc1, self.norm2.forward(x.clone()), Epilogue::Gelu);
        x + gamma_2 * token_linear(&self.fc2, h)
    }

    fn visit_tensors(&mut self, v: &mut impl TensorVisitor, prefix: &str) -> Result<()> {
        visit_layer_norm(v, &format!("{prefix}.norm1"), &mut self.norm1)?;
        self.attn.visit_tensors(v, &format!("{prefix}.attn"))?;
        visit_layer_norm(v, &format!("{prefix}.norm2"), &mut self.norm2)?;
        visit_linear(v, &format!("{prefix}.mlp.fc1"), &mut self.fc1, true)?;
        visit_linear(v, &format!("{prefix}.mlp.fc2"), &mut self.fc2, true)?;
        v.param(&format!("{prefix}.gamma_1"), &mut self.gamma_1)?;
        v.param(&format!("{prefix}.gamma_2"), &mut self.gamma_2)
    }

    /// The fork's init of block `index` (0-based) beyond the constructor's, in module order:
    /// zero linear biases, and `fix_init_weight`: `attn.proj` and `mlp.fc2` redrawn with std
    /// 0.02 / √(2(index+1)).
    fn init_parameters(mut self, index: usize) -> Self {
        let layer = index as f64 + 1.0;
        let rescaled = Distribution::Normal(0.0, 0.02 / (2.0 * layer).sqrt());
        self.attn.proj.weight = init_random(self.attn.proj.weight, rescaled);
        self.attn.proj.bias = self.attn.proj.bias.take().map(init_zeros);
        self.fc1.bias = self.fc1.bias.take().map(init_zeros);
        self.fc2.weight = init_random(self.fc2.weight, rescaled);
        self.fc2.bias = self.fc2.bias.take().map(init_zeros);
        self
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
        let x = patch_tokens(&self.patch_embed, images); // [b, grid², width]
        let [batch, _, width] = x.dims();
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

    /// As [`PanDermVisionTransformer::forward`], and every patch token through the same final
    /// `norm` (twice, as the pooled feature passes it before and after the mean) and `head`:
    /// `[batch, grid², embed_dim]`, row-major patches.
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let x = patch_tokens(&self.patch_embed, images); // [b, grid², width]
        let [batch, _, width] = x.dims();
        let cls = self.cls_token.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let mut x = Tensor::cat(vec![cls, x], 1) + self.pos_embed.val().unsqueeze_dim::<3>(0);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x);
        let seq = x.dims()[1];
        let tokens = x.narrow(1, 1, seq - 1);
        let pooled = self.norm.forward(tokens.clone().mean_dim(1).reshape([batch, width]));
        let patches = token_linear(&self.head, self.norm.forward(tokens));
        (self.head.forward(pooled), patches)
    }

    /// The tensors under the Derm1M fork's names (`visual.…`), for loading and saving alike;
    /// `cls_token` and `pos_embed` carry PyTorch's leading 1-dimensions in the checkpoint.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        v.param("visual.patch_embed.proj.weight", &mut self.patch_embed.weight)?;
        match &mut self.patch_embed.bias {
            Some(bias) => v.param("visual.patch_embed.proj.bias", bias)?,
            None => return Err(Error::Weights("visual.patch_embed.proj.bias: no bias".into())),
        }
        v.param_unsqueezed::<1, 3>("visual.cls_token", &mut self.cls_token, true)?;
        v.param_unsqueezed::<2, 3>("visual.pos_embed", &mut self.pos_embed, false)?;
        for (i, block) in self.blocks.iter_mut().enumerate() {
            block.visit_tensors(v, &format!("visual.blocks.{i}"))?;
        }
        visit_layer_norm(v, "visual.norm", &mut self.norm)?;
        visit_linear(v, "visual.head", &mut self.head, true)
    }

    /// The fork's init beyond the constructor's (`trunc_normal_(std=.02)` weights, layer scale,
    /// the sin-cos table and the ×0.001 head are set there), in module order: each block's
    /// (see [`PanDermBlock`]), then a zero `head` bias.
    pub fn init_parameters(mut self) -> Self {
        self.blocks = self.blocks.into_iter().enumerate().map(|(i, b)| b.init_parameters(i)).collect();
        self.head.bias = self.head.bias.take().map(init_zeros);
        self
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
