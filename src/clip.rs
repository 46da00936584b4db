//! open_clip's `CLIP`: the two towers and `logit_scale`.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::error::Result;
use crate::text::TextTransformer;
use crate::vision::VisionTransformer;
use crate::weights::{StateDict, WeightLoader};

#[derive(Module, Debug)]
pub struct Clip {
    pub visual: VisionTransformer,
    pub text: TextTransformer,
    /// ln of the contrastive temperature, shape `[1]` (0-d in PyTorch).
    pub logit_scale: Param<Tensor<1>>,
}

impl Clip {
    /// A randomly initialised model (parameters are created lazily, on first use).
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        Clip {
            visual: VisionTransformer::new(cfg, device),
            text: TextTransformer::new(cfg, device),
            logit_scale: Initializer::Constant { value: (1.0f64 / 0.07).ln() }.init([1], device),
        }
    }

    /// Builds the model from an open_clip state dict. Every tensor must be present with the
    /// shape the config implies, and no other tensor may be left over.
    pub fn from_state_dict(cfg: &ClipConfig, weights: StateDict, device: &Device) -> Result<Self> {
        let mut model = Clip::new(cfg, device);
        let mut w = WeightLoader::new(weights, device);
        model.visual.load(&mut w, cfg)?;
        model.text.load(&mut w, cfg)?;
        model.logit_scale = w.param("logit_scale", [1])?;
        w.finish()?;
        Ok(model)
    }

    /// `[batch, 3, size, size]` normalised images → unnormalised `[batch, embed_dim]`.
    pub fn encode_image(&self, images: Tensor<4>) -> Tensor<2> {
        self.visual.forward(images)
    }

    /// `[batch, context_length]` token ids → unnormalised `[batch, embed_dim]`.
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.text.forward(ids)
    }
}
