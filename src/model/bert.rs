//! open_clip's `HFTextEncoder` over a Hugging Face BERT (DermLIP-PanDerm's PubMedBERT): BERT
//! embeddings (word + learned absolute position + token type 0, LayerNorm), post-norm encoder
//! layers with exact GELU, the attention mask `ids != pad_token_id`, mean pooling over the
//! unmasked tokens ([CLS] and [SEP] included), then the `proj` MLP (or linear) without biases.
//! State-dict names are the hub's: `text.transformer.embeddings.…`, `text.transformer.encoder.layer.N.…`,
//! `text.proj.0.weight`, `text.proj.2.weight`.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};

use crate::config::{BertConfig, ClipConfig, HfProjection, TextArch, TextConfig};
use crate::error::{Error, Result};
use crate::model::kernels::Epilogue;
use crate::model::layers::{
    init_random, init_zeros, layer_norm, normal, reinit, token_linear, token_linear_act, train_dropout,
    visit_layer_norm, visit_linear,
};
use crate::weights::TensorVisitor;

/// Buffers some transformers versions save with a BERT; they are `arange` / zeros and unused here.
pub const OPTIONAL_BUFFERS: [&str; 2] =
    ["text.transformer.embeddings.position_ids", "text.transformer.embeddings.token_type_ids"];

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

impl BertSelfAttention {
    /// `mask`: `[batch, heads, seq, seq]`, true where a key is padding. `dropout`: Hugging Face's
    /// `attention_probs_dropout_prob` on the attention probabilities, training only: then the
    /// attention is computed explicitly (the fused kernel has no dropout).
    fn forward(&self, x: Tensor<3>, mask: Tensor<4, Bool>, dropout: f64) -> Tensor<3> {
        let [batch, seq, width] = x.dims();
        let split = |l: &Linear| {
            token_linear(l, x.clone()).reshape([batch, seq, self.heads, width / self.heads]).swap_dims(1, 2)
        };
        let (q, k, v) = (split(&self.query), split(&self.key), split(&self.value));
        let out = if dropout > 0.0 && x.device().is_autodiff() {
            let scale = 1.0 / ((width / self.heads) as f64).sqrt();
            let scores = q.matmul(k.swap_dims(2, 3)) * scale;
            let probs = softmax(scores.mask_fill(mask, -1.0e9), 3);
            train_dropout(probs, dropout).matmul(v)
        } else {
            let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
            attention(q, k, v, Some(mask), None, options)
        };
        out.swap_dims(1, 2).reshape([batch, seq, width])
    }
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertSelfAttention,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
}

impl BertLayer {
    fn new(t: &TextConfig, eps: f64, device: &Device) -> Self {
        let (width, hidden) = (t.width, t.mlp_width);
        let linear = |i, o| LinearConfig::new(i, o).with_initializer(normal(0.02)).init(device);
        BertLayer {
            attention: BertSelfAttention {
                query: linear(width, width),
                key: linear(width, width),
                value: linear(width, width),
                heads: t.heads,
            },
            attention_output: linear(width, width),
            attention_norm: layer_norm(width, eps, device),
            intermediate: linear(width, hidden),
            output: linear(hidden, width),
            output_norm: layer_norm(width, eps, device),
        }
    }

    /// `hidden`/`attention`: the training-only dropout rates (Hugging Face's `BertSelfOutput` and
    /// `BertOutput` dropouts, and the attention probabilities').
    fn forward(&self, x: Tensor<3>, mask: Tensor<4, Bool>, hidden: f64, attention: f64) -> Tensor<3> {
        let a = token_linear(&self.attention_output, self.attention.forward(x.clone(), mask, attention));
        let x = self.attention_norm.forward(train_dropout(a, hidden) + x);
        let h = token_linear(&self.output, token_linear_act(&self.intermediate, x.clone(), Epilogue::Gelu));
        self.output_norm.forward(train_dropout(h, hidden) + x)
    }

    /// Hugging Face's `BertLayer` names under `p`.
    fn visit_tensors(&mut self, v: &mut impl TensorVisitor, p: &str) -> Result<()> {
        let a = &mut self.attention;
        visit_linear(v, &format!("{p}.attention.self.query"), &mut a.query, true)?;
        visit_linear(v, &format!("{p}.attention.self.key"), &mut a.key, true)?;
        visit_linear(v, &format!("{p}.attention.self.value"), &mut a.value, true)?;
        visit_linear(v, &format!("{p}.attention.output.dense"), &mut self.attention_output, true)?;
        visit_layer_norm(v, &format!("{p}.attention.output.LayerNorm"), &mut self.attention_norm)?;
        visit_linear(v, &format!("{p}.intermediate.dense"), &mut self.intermediate, true)?;
        visit_linear(v, &format!("{p}.output.dense"), &mut self.output, true)?;
        visit_layer_norm(v, &format!("{p}.output.LayerNorm"), &mut self.output_norm)
    }

    /// Hugging Face `_init_weights` beyond the constructor's normal(0.02) weights: zero linear
    /// biases, in module order.
    fn init_parameters(mut self) -> Self {
        let a = &mut self.attention;
        a.query.bias = a.query.bias.take().map(init_zeros);
        a.key.bias = a.key.bias.take().map(init_zeros);
        a.value.bias = a.value.bias.take().map(init_zeros);
        for l in [&mut self.attention_output, &mut self.intermediate, &mut self.output] {
            l.bias = l.bias.take().map(init_zeros);
        }
        self
    }
}

#[derive(Module, Debug)]
pub struct BertTextEncoder {
    pub word_embeddings: Param<Tensor<2>>,
    pub position_embeddings: Param<Tensor<2>>,
    pub token_type_embeddings: Param<Tensor<2>>,
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<BertLayer>,
    /// `proj.0` (or the single `proj` of `hf_proj_type: "linear"`).
    pub proj_in: Linear,
    /// `proj.2` after GELU (`hf_proj_type: "mlp"`).
    pub proj_out: Option<Linear>,
    pub pad_token_id: u32,
    /// `hidden_dropout_prob`, applied in training only (embeddings, attention and feed-forward
    /// outputs); 0 as built.
    pub hidden_dropout: f64,
    /// `attention_probs_dropout_prob`, training only; 0 as built.
    pub attention_dropout: f64,
}

fn bert(cfg: &ClipConfig) -> Result<&BertConfig> {
    match &cfg.text.arch {
        TextArch::Bert(b) => Ok(b),
        TextArch::Clip => Err(Error::Config("the config's text tower is not a BERT".into())),
    }
}

impl BertTextEncoder {
    /// `cfg.text.arch` must be [`TextArch::Bert`].
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let t = &cfg.text;
        let b = bert(cfg).expect("BertTextEncoder::new needs a BERT text config");
        let (proj_in, proj_out) = match b.projection {
            HfProjection::Mlp => {
                let hidden = b.projection.hidden(t.width, cfg.embed_dim);
                (no_bias(t.width, hidden, device), Some(no_bias(hidden, cfg.embed_dim, device)))
            }
            HfProjection::Linear => (no_bias(t.width, cfg.embed_dim, device), None),
        };
        BertTextEncoder {
            word_embeddings: normal(0.02).init([t.vocab_size, t.width], device),
            position_embeddings: normal(0.02).init([b.max_positions, t.width], device),
            token_type_embeddings: normal(0.02).init([b.type_vocab_size, t.width], device),
            embeddings_norm: layer_norm(t.width, b.layer_norm_eps, device),
            layers: (0..t.layers).map(|_| BertLayer::new(t, b.layer_norm_eps, device)).collect(),
            proj_in,
            proj_out,
            pad_token_id: b.pad_token_id,
            hidden_dropout: 0.0,
            attention_dropout: 0.0,
        }
    }

    /// `ids`: `[batch, seq]` token ids (seq ≤ max positions). Returns unnormalised `[batch, embed_dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, seq] = ids.dims();
        let width = self.word_embeddings.dims()[1];
        let heads = self.layers.first().map_or(1, |l| l.attention.heads);
        let pad = ids.clone().equal_elem(self.pad_token_id as i64); // [b, s]
        let keep = pad.clone().bool_not().float(); // [b, s]
        let mask = pad.reshape([batch, 1, 1, seq]).expand([batch, heads, seq, seq]);

        let words = self.word_embeddings.val().select(0, ids.reshape([batch * seq])).reshape([batch, seq, width]);
        let positions = self.position_embeddings.val().narrow(0, 0, seq).unsqueeze_dim::<3>(0);
        let token_type = self.token_type_embeddings.val().narrow(0, 0, 1).unsqueeze_dim::<3>(0);
        let mut x = train_dropout(self.embeddings_norm.forward(words + positions + token_type), self.hidden_dropout);
        for layer in &self.layers {
            x = layer.forward(x, mask.clone(), self.hidden_dropout, self.attention_dropout);
        }
        let summed = (x * keep.clone().unsqueeze_dim::<3>(2)).sum_dim(1).reshape([batch, width]);
        let pooled = summed / keep.sum_dim(1); // [b, width] / [b, 1]
        let h = self.proj_in.forward(pooled);
        match &self.proj_out {
            Some(out) => out.forward(gelu(h)),
            None => h,
        }
    }

    /// The tensors under the hub's names (`text.transformer.…`, `text.proj…`), for loading and
    /// saving alike. The [`OPTIONAL_BUFFERS`] are not parameters and are not visited.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        let e = "text.transformer.embeddings";
        v.param(&format!("{e}.word_embeddings.weight"), &mut self.word_embeddings)?;
        v.param(&format!("{e}.position_embeddings.weight"), &mut self.position_embeddings)?;
        v.param(&format!("{e}.token_type_embeddings.weight"), &mut self.token_type_embeddings)?;
        visit_layer_norm(v, &format!("{e}.LayerNorm"), &mut self.embeddings_norm)?;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_tensors(v, &format!("text.transformer.encoder.layer.{i}"))?;
        }
        match &mut self.proj_out {
            // `hf_proj_type: "mlp"`: `proj.0`, GELU, `proj.2`.
            Some(out) => {
                visit_linear(v, "text.proj.0", &mut self.proj_in, false)?;
                visit_linear(v, "text.proj.2", out, false)
            }
            None => visit_linear(v, "text.proj", &mut self.proj_in, false),
        }
    }

    /// `HFTextEncoder` built from its config, as the fork does without pretrained text weights,
    /// beyond the constructor's normal(0.02) weights and embeddings, in module order: the `[PAD]`
    /// row of the word embeddings zero (`nn.Embedding(padding_idx)` as HF initialises it, the
    /// table redrawn), zero linear biases, and PyTorch's default `nn.Linear` init for the `proj`
    /// layers (`U(±1/√fan_in)`).
    pub fn init_parameters(mut self) -> Self {
        let pad = self.pad_token_id as usize;
        self.word_embeddings = reinit(self.word_embeddings, |shape, device| {
            let dims = shape.dims::<2>();
            let t = Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.02), device);
            t.slice_assign([pad..pad + 1, 0..dims[1]], Tensor::<2>::zeros([1, dims[1]], device))
        });
        self.layers = self.layers.into_iter().map(BertLayer::init_parameters).collect();
        self.proj_in = default_linear_init(self.proj_in);
        self.proj_out = self.proj_out.map(default_linear_init);
        self
    }
}

/// PyTorch's default `nn.Linear` weight init, `U(±1/√fan_in)` (the layers here have no bias).
fn default_linear_init(mut l: Linear) -> Linear {
    let a = 1.0 / (l.weight.lazy_shape().dims::<2>()[0] as f64).sqrt(); // Burn [in, out]: fan_in first
    l.weight = init_random(l.weight, Distribution::Uniform(-a, a));
    l
}

fn no_bias(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(false).with_initializer(normal(0.02)).init(device)
}
