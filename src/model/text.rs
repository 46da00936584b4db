//! open_clip's CLIP text tower: token + position embedding, causal block stack, ln_final,
//! pooling at the end-of-text token (the largest id, as open_clip's `argmax`), `@ text_projection`.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::error::Result;
use crate::model::layers::{layer_norm, visit_layer_norm};
use crate::model::transformer::{TextInitStd, Transformer, TransformerDims};
use crate::weights::TensorVisitor;

#[derive(Module, Debug)]
pub struct TextTransformer {
    pub token_embedding: Embedding,
    pub positional_embedding: Param<Tensor<2>>,
    pub transformer: Transformer,
    pub ln_final: LayerNorm,
    pub text_projection: Param<Tensor<2>>,
}

pub fn text_dims(cfg: &ClipConfig) -> TransformerDims {
    let t = &cfg.text;
    TransformerDims {
        width: t.width,
        layers: t.layers,
        heads: t.heads,
        mlp_width: t.mlp_width,
        activation: cfg.activation,
        eps: cfg.layer_norm_eps(),
    }
}

impl TextTransformer {
    /// Random initialisation with open_clip's `CLIP.init_parameters` standard deviations.
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let t = &cfg.text;
        let normal = |std: f64| Initializer::Normal { mean: 0.0, std };
        TextTransformer {
            token_embedding: EmbeddingConfig::new(t.vocab_size, t.width).with_initializer(normal(0.02)).init(device),
            positional_embedding: normal(0.01).init([t.context_length, t.width], device),
            transformer: Transformer::new(text_dims(cfg), device),
            ln_final: layer_norm(t.width, cfg.layer_norm_eps(), device),
            text_projection: normal((t.width as f64).powf(-0.5)).init([t.width, cfg.embed_dim], device),
        }
    }

    /// `ids`: `[batch, context_length]` token ids. Returns unnormalised `[batch, embed_dim]`.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let [batch, seq] = ids.dims();
        let width = self.positional_embedding.dims()[1];
        let eot = ids.clone().argmax(1); // [batch, 1]
        let x =
            self.token_embedding.forward(ids) + self.positional_embedding.val().narrow(0, 0, seq).unsqueeze_dim::<3>(0);
        let x = self.transformer.forward(x, true);
        let x = self.ln_final.forward(x);
        let index = eot.reshape([batch, 1, 1]).expand([batch, 1, width]);
        x.gather(1, index).reshape([batch, width]).matmul(self.text_projection.val())
    }

    /// The tensors under open_clip's `CLIP` names (no prefix), for loading and saving alike.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        v.param("token_embedding.weight", &mut self.token_embedding.weight)?;
        v.param("positional_embedding", &mut self.positional_embedding)?;
        self.transformer.visit_tensors(v, "transformer")?;
        visit_layer_norm(v, "ln_final", &mut self.ln_final)?;
        v.param("text_projection", &mut self.text_projection)
    }

    /// open_clip's `CLIP.init_parameters` for the text tower beyond the constructor's: normal
    /// block weights scaled by width and depth, zero attention biases.
    pub fn init_parameters(mut self) -> Self {
        let width = self.positional_embedding.lazy_shape().dims::<2>()[1];
        let std = TextInitStd::new(width, self.transformer.resblocks.len());
        self.transformer = self.transformer.init_parameters(Some(std));
        self
    }
}
