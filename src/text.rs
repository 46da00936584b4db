//! open_clip's CLIP text tower: token + position embedding, causal block stack, ln_final,
//! pooling at the end-of-text token (the largest id, as open_clip's `argmax`), `@ text_projection`.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::error::Result;
use crate::transformer::{layer_norm, load_layer_norm, Transformer, TransformerDims};
use crate::weights::WeightLoader;

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

    pub fn load(&mut self, w: &mut WeightLoader, cfg: &ClipConfig) -> Result<()> {
        let t = &cfg.text;
        self.token_embedding.weight = w.param("token_embedding.weight", [t.vocab_size, t.width])?;
        self.positional_embedding = w.param("positional_embedding", [t.context_length, t.width])?;
        self.transformer.load(w, "transformer", text_dims(cfg))?;
        load_layer_norm(&mut self.ln_final, w, "ln_final", t.width)?;
        self.text_projection = w.param("text_projection", [t.width, cfg.embed_dim])?;
        Ok(())
    }
}
