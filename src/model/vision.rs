//! open_clip's `VisionTransformer`: patch conv (no bias), class token, learned positions,
//! ln_pre, the shared block stack, ln_post, class-token pooling and `@ proj`.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm};
use burn::tensor::{Device, Tensor};

use crate::config::{ClipConfig, VisionConfig, VisionPool};
use crate::error::Result;
use crate::model::layers::{layer_norm, patch_dropout, patch_tokens, visit_layer_norm};
use crate::model::transformer::{Transformer, TransformerDims};
use crate::weights::TensorVisitor;

#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub conv1: Conv2d,
    pub class_embedding: Param<Tensor<1>>,
    pub positional_embedding: Param<Tensor<2>>,
    pub ln_pre: LayerNorm,
    pub transformer: Transformer,
    pub ln_post: LayerNorm,
    pub proj: Param<Tensor<2>>,
    pub avg_pool: bool,
    pub final_ln_after_pool: bool,
    /// open_clip's `patch_dropout` rate, applied in training only (see [`patch_dropout`]); 0 as
    /// built.
    pub patch_dropout: f64,
}

pub fn vision_dims(cfg: &ClipConfig) -> TransformerDims {
    let v = &cfg.vision;
    TransformerDims {
        width: v.width,
        layers: v.layers,
        heads: v.heads,
        mlp_width: v.mlp_width,
        activation: cfg.activation,
        eps: cfg.layer_norm_eps(),
    }
}

impl VisionTransformer {
    /// Random initialisation as open_clip's constructor does it (scale = width^-0.5).
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let v: &VisionConfig = &cfg.vision;
        let scale = (v.width as f64).powf(-0.5);
        let normal = Initializer::Normal { mean: 0.0, std: scale };
        VisionTransformer {
            conv1: Conv2dConfig::new([3, v.width], [v.patch_size, v.patch_size])
                .with_stride([v.patch_size, v.patch_size])
                .with_bias(false)
                .init(device),
            class_embedding: normal.init([v.width], device),
            positional_embedding: normal.init([v.num_positions(), v.width], device),
            ln_pre: layer_norm(v.width, cfg.layer_norm_eps(), device),
            transformer: Transformer::new(vision_dims(cfg), device),
            ln_post: layer_norm(v.width, cfg.layer_norm_eps(), device),
            proj: normal.init([v.width, cfg.embed_dim], device),
            avg_pool: v.pool == VisionPool::Avg,
            final_ln_after_pool: v.final_ln_after_pool,
            patch_dropout: 0.0,
        }
    }

    /// `images`: `[batch, 3, size, size]`, normalised. Returns unnormalised `[batch, embed_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = patch_tokens(&self.conv1, images); // [b, grid², width]
        let [batch, _, width] = x.dims();
        let cls = self.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let x = Tensor::cat(vec![cls, x], 1) + self.positional_embedding.val().unsqueeze_dim::<3>(0);
        let x = self.ln_pre.forward(patch_dropout(x, self.patch_dropout));
        // Class-token pooling needs the last block's output at position 0 only.
        let x = if self.avg_pool { self.transformer.forward(x, false) } else { self.transformer.forward_first(x, 1) };
        let pooled = if self.final_ln_after_pool {
            self.ln_post.forward(self.pool(x))
        } else {
            self.pool(self.ln_post.forward(x))
        };
        pooled.matmul(self.proj.val())
    }

    /// As [`VisionTransformer::forward`], and every patch token through the same `ln_post` and
    /// `proj` as the pooled token: `[batch, grid², embed_dim]` (row-major patches), for a map of
    /// where the image agrees with a text. The last block then computes every row.
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let x = patch_tokens(&self.conv1, images); // [b, grid², width]
        let [batch, _, width] = x.dims();
        let cls = self.class_embedding.val().reshape([1, 1, width]).expand([batch, 1, width]);
        let x = Tensor::cat(vec![cls, x], 1) + self.positional_embedding.val().unsqueeze_dim::<3>(0);
        let x = self.transformer.forward(self.ln_pre.forward(x), false);
        let seq = x.dims()[1];
        let normed = self.ln_post.forward(x.clone());
        let pooled =
            if self.final_ln_after_pool { self.ln_post.forward(self.pool(x)) } else { self.pool(normed.clone()) };
        let patches = normed.narrow(1, 1, seq - 1).matmul(self.proj.val().unsqueeze_dim::<3>(0));
        (pooled.matmul(self.proj.val()), patches)
    }

    fn pool(&self, x: Tensor<3>) -> Tensor<2> {
        let [batch, seq, width] = x.dims();
        if self.avg_pool {
            x.narrow(1, 1, seq - 1).mean_dim(1).reshape([batch, width])
        } else {
            x.narrow(1, 0, 1).reshape([batch, width])
        }
    }

    /// The tensors under open_clip's `CLIP` names (`visual.…`), for loading and saving alike.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        v.param("visual.conv1.weight", &mut self.conv1.weight)?;
        v.param("visual.class_embedding", &mut self.class_embedding)?;
        v.param("visual.positional_embedding", &mut self.positional_embedding)?;
        visit_layer_norm(v, "visual.ln_pre", &mut self.ln_pre)?;
        self.transformer.visit_tensors(v, "visual.transformer")?;
        visit_layer_norm(v, "visual.ln_post", &mut self.ln_post)?;
        v.param("visual.proj", &mut self.proj)
    }

    /// open_clip's `VisionTransformer` init beyond the constructor's: `nn.MultiheadAttention`'s
    /// xavier `in_proj` and zero attention biases.
    pub fn init_parameters(mut self) -> Self {
        self.transformer = self.transformer.init_parameters(None);
        self
    }
}
