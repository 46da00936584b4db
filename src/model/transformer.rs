//! The pre-norm residual block shared by both CLIP towers (open_clip `ResidualAttentionBlock`
//! with `nn.MultiheadAttention`'s fused `in_proj`), and the stack of them.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, Tensor};

use crate::config::Activation;
use crate::error::Result;
use crate::model::kernels::{self, Epilogue};
use crate::model::layers::{
    add_norm_tokens, init_random, init_zeros, layer_norm, norm_tokens, split_qkv, token_linear, token_linear_act,
    visit_bias, visit_layer_norm, visit_linear,
};
use crate::weights::TensorVisitor;

#[derive(Module, Debug)]
pub struct Attention {
    /// q, k and v in one `[d, 3d]` projection, laid out as PyTorch's `in_proj_weight`.
    pub in_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
}

impl Attention {
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Attention {
            in_proj: LinearConfig::new(width, 3 * width).init(device),
            out_proj: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let seq = x.dims()[1];
        self.forward_queries(x, seq, causal)
    }

    /// The output at the first `queries` positions only; every position is still a key and a value.
    fn forward_queries(&self, x: Tensor<3>, queries: usize, causal: bool) -> Tensor<3> {
        let [batch, _, width] = x.dims();
        let qkv = token_linear(&self.in_proj, x);
        if kernels::attention_uses_own_kernel(&qkv, self.heads, queries) {
            return token_linear(&self.out_proj, kernels::attention(qkv, self.heads, queries, causal));
        }
        let (q, k, v) = split_qkv(qkv, self.heads, Some(queries));
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        let out = attention(q, k, v, None, None, options); // [batch, heads, queries, head_dim]
        token_linear(&self.out_proj, out.swap_dims(1, 2).reshape([batch, queries, width]))
    }

    /// `nn.MultiheadAttention`: the fused `in_proj_weight` / `in_proj_bias`, then `out_proj`.
    fn visit_tensors(&mut self, v: &mut impl TensorVisitor, prefix: &str) -> Result<()> {
        v.linear_weight(&format!("{prefix}.in_proj_weight"), &mut self.in_proj.weight)?;
        visit_bias(v, &format!("{prefix}.in_proj_bias"), &mut self.in_proj.bias)?;
        visit_linear(v, &format!("{prefix}.out_proj"), &mut self.out_proj, true)
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
    pub quick_gelu: bool,
}

impl Mlp {
    pub fn new(width: usize, hidden: usize, activation: Activation, device: &Device) -> Self {
        Mlp {
            c_fc: LinearConfig::new(width, hidden).init(device),
            c_proj: LinearConfig::new(hidden, width).init(device),
            quick_gelu: activation == Activation::QuickGelu,
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let act = if self.quick_gelu { Epilogue::QuickGelu } else { Epilogue::Gelu };
        token_linear(&self.c_proj, token_linear_act(&self.c_fc, x, act))
    }

    fn visit_tensors(&mut self, v: &mut impl TensorVisitor, prefix: &str) -> Result<()> {
        visit_linear(v, &format!("{prefix}.c_fc"), &mut self.c_fc, true)?;
        visit_linear(v, &format!("{prefix}.c_proj"), &mut self.c_proj, true)
    }
}

#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
    /// `ln_1`'s and `ln_2`'s epsilon (Burn keeps the layer's own private), for the fused kernel.
    pub eps: f64,
}

impl ResidualBlock {
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let h = self.attn.forward(norm_tokens(&self.ln_1, self.eps, x.clone()), causal);
        let (x, normed) = add_norm_tokens(&self.ln_2, self.eps, x, h);
        x + self.mlp.forward(normed)
    }

    /// [`ResidualBlock::forward`] (non-causal) at the first `n` positions only.
    fn forward_first(&self, x: Tensor<3>, n: usize) -> Tensor<3> {
        let h = self.attn.forward_queries(norm_tokens(&self.ln_1, self.eps, x.clone()), n, false);
        let (x, normed) = add_norm_tokens(&self.ln_2, self.eps, x.narrow(1, 0, n), h);
        x + self.mlp.forward(normed)
    }
}

/// Sizes of one tower's block stack.
#[derive(Clone, Copy, Debug)]
pub struct TransformerDims {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_width: usize,
    pub activation: Activation,
    pub eps: f64,
}

#[derive(Module, Debug)]
pub struct Transformer {
    pub resblocks: Vec<ResidualBlock>,
}

impl Transformer {
    pub fn new(d: TransformerDims, device: &Device) -> Self {
        let resblocks = (0..d.layers)
            .map(|_| ResidualBlock {
                ln_1: layer_norm(d.width, d.eps, device),
                attn: Attention::new(d.width, d.heads, device),
                ln_2: layer_norm(d.width, d.eps, device),
                mlp: Mlp::new(d.width, d.mlp_width, d.activation, device),
                eps: d.eps,
            })
            .collect();
        Transformer { resblocks }
    }

    pub fn forward(&self, mut x: Tensor<3>, causal: bool) -> Tensor<3> {
        for block in &self.resblocks {
            x = block.forward(x, causal);
        }
        x
    }

    /// The (non-causal) stack's output at the first `n` positions, `[batch, n, width]`: the last
    /// block computes no other row (class-token pooling reads one), which saves its MLP and
    /// out-projection for every other token: 6.3 % of a ViT-B/16 forward's multiply-adds.
    pub fn forward_first(&self, mut x: Tensor<3>, n: usize) -> Tensor<3> {
        let Some((last, rest)) = self.resblocks.split_last() else {
            return x.narrow(1, 0, n);
        };
        for block in rest {
            x = block.forward(x, false);
        }
        last.forward_first(x, n)
    }

    /// The blocks under `{prefix}.resblocks.N.…` (open_clip's names).
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor, prefix: &str) -> Result<()> {
        for (i, block) in self.resblocks.iter_mut().enumerate() {
            let p = format!("{prefix}.resblocks.{i}");
            visit_layer_norm(v, &format!("{p}.ln_1"), &mut block.ln_1)?;
            block.attn.visit_tensors(v, &format!("{p}.attn"))?;
            visit_layer_norm(v, &format!("{p}.ln_2"), &mut block.ln_2)?;
            block.mlp.visit_tensors(v, &format!("{p}.mlp"))?;
        }
        Ok(())
    }

    /// open_clip's init of the block stack, block by block in module order. Always
    /// `nn.MultiheadAttention`'s own: zero `in_proj` / `out_proj` biases and, without `text`, a
    /// xavier-uniform `in_proj` weight. With `text`, `CLIP.init_parameters`' normal weights instead
    /// (in_proj, out_proj, c_fc, c_proj). Every other parameter keeps the constructor's init.
    pub fn init_parameters(mut self, text: Option<TextInitStd>) -> Self {
        self.resblocks = self
            .resblocks
            .into_iter()
            .map(|mut b| {
                b.attn.in_proj.weight = match text {
                    Some(std) => init_random(b.attn.in_proj.weight, Distribution::Normal(0.0, std.attn)),
                    None => {
                        let dims = b.attn.in_proj.weight.lazy_shape().dims::<2>();
                        let (fan_in, fan_out) = (dims[0] as f64, dims[1] as f64 / 3.0);
                        // torch xavier_uniform_ on the [3d, d] matrix: fans d and 3d.
                        let a = (6.0 / (fan_in + 3.0 * fan_out)).sqrt();
                        init_random(b.attn.in_proj.weight, Distribution::Uniform(-a, a))
                    }
                };
                b.attn.in_proj.bias = b.attn.in_proj.bias.take().map(init_zeros);
                if let Some(std) = text {
                    b.attn.out_proj.weight = init_random(b.attn.out_proj.weight, Distribution::Normal(0.0, std.proj));
                }
                b.attn.out_proj.bias = b.attn.out_proj.bias.take().map(init_zeros);
                if let Some(std) = text {
                    b.mlp.c_fc.weight = init_random(b.mlp.c_fc.weight, Distribution::Normal(0.0, std.fc));
                    b.mlp.c_proj.weight = init_random(b.mlp.c_proj.weight, Distribution::Normal(0.0, std.proj));
                }
                b
            })
            .collect();
        self
    }
}

/// The standard deviations of open_clip's `CLIP.init_parameters` for the text transformer's
/// blocks.
#[derive(Clone, Copy, Debug)]
pub struct TextInitStd {
    /// `in_proj_weight`: width^-0.5.
    pub attn: f64,
    /// `out_proj` and `c_proj` weights: width^-0.5 · (2·layers)^-0.5.
    pub proj: f64,
    /// `c_fc` weight: (2·width)^-0.5.
    pub fc: f64,
}

impl TextInitStd {
    pub fn new(width: usize, layers: usize) -> Self {
        let w = width as f64;
        TextInitStd {
            attn: w.powf(-0.5),
            proj: w.powf(-0.5) * (2.0 * layers as f64).powf(-0.5),
            fc: (2.0 * w).powf(-0.5),
        }
    }
}
