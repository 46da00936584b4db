//! The pre-norm residual block shared by both CLIP towers (open_clip `ResidualAttentionBlock`
//! with `nn.MultiheadAttention`'s fused `in_proj`), and the stack of them.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Tensor};

use crate::config::Activation;
use crate::error::Result;
use crate::weights::WeightLoader;

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
        let [batch, seq, width] = x.dims();
        let head_dim = width / self.heads;
        let qkv = linear(&self.in_proj, x).reshape([batch, seq, 3, self.heads, head_dim]).permute([2, 0, 3, 1, 4]);
        let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<4>(0).narrow(2, 0, queries);
        let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<4>(0);
        let v = qkv.narrow(0, 2, 1).squeeze_dim::<4>(0);
        let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: causal };
        let out = attention(q, k, v, None, None, options); // [batch, heads, queries, head_dim]
        linear(&self.out_proj, out.swap_dims(1, 2).reshape([batch, queries, width]))
    }

    fn load(&mut self, w: &mut WeightLoader, prefix: &str, width: usize) -> Result<()> {
        self.in_proj.weight = w.linear_weight(&format!("{prefix}.in_proj_weight"), width, 3 * width)?;
        self.in_proj.bias = Some(w.param(&format!("{prefix}.in_proj_bias"), [3 * width])?);
        load_linear(&mut self.out_proj, w, &format!("{prefix}.out_proj"), width, width)
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
        let h = linear(&self.c_fc, x);
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        linear(&self.c_proj, h)
    }

    fn load(&mut self, w: &mut WeightLoader, prefix: &str, width: usize, hidden: usize) -> Result<()> {
        load_linear(&mut self.c_fc, w, &format!("{prefix}.c_fc"), width, hidden)?;
        load_linear(&mut self.c_proj, w, &format!("{prefix}.c_proj"), hidden, width)
    }
}

#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

impl ResidualBlock {
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), causal);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }

    /// [`ResidualBlock::forward`] (non-causal) at the first `n` positions only.
    fn forward_first(&self, x: Tensor<3>, n: usize) -> Tensor<3> {
        let h = self.attn.forward_queries(self.ln_1.forward(x.clone()), n, false);
        let x = x.narrow(1, 0, n) + h;
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
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

    pub fn load(&mut self, w: &mut WeightLoader, prefix: &str, d: TransformerDims) -> Result<()> {
        for (i, block) in self.resblocks.iter_mut().enumerate() {
            let p = format!("{prefix}.resblocks.{i}");
            load_layer_norm(&mut block.ln_1, w, &format!("{p}.ln_1"), d.width)?;
            block.attn.load(w, &format!("{p}.attn"), d.width)?;
            load_layer_norm(&mut block.ln_2, w, &format!("{p}.ln_2"), d.width)?;
            block.mlp.load(w, &format!("{p}.mlp"), d.width, d.mlp_width)?;
        }
        Ok(())
    }
}

/// A linear layer over `[batch, seq, d]` as one `[batch·seq, d]` matmul: one large GEMM instead
/// of a batch of small ones against a broadcast weight.
fn linear(l: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [batch, seq, d] = x.dims();
    let y = l.forward(x.reshape([batch * seq, d]));
    let out = y.dims()[1];
    y.reshape([batch, seq, out])
}

pub fn layer_norm(width: usize, eps: f64, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(eps).init(device)
}

pub fn load_layer_norm(ln: &mut LayerNorm, w: &mut WeightLoader, prefix: &str, width: usize) -> Result<()> {
    ln.gamma = w.param(&format!("{prefix}.weight"), [width])?;
    ln.beta = Some(w.param(&format!("{prefix}.bias"), [width])?);
    Ok(())
}

fn load_linear(l: &mut Linear, w: &mut WeightLoader, prefix: &str, d_in: usize, d_out: usize) -> Result<()> {
    l.weight = w.linear_weight(&format!("{prefix}.weight"), d_in, d_out)?;
    l.bias = Some(w.param(&format!("{prefix}.bias"), [d_out])?);
    Ok(())
}
