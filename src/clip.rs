//! open_clip's `CLIP`: the two towers and `logit_scale`.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::error::Result;
use crate::text::TextTransformer;
use crate::vision::VisionTransformer;
use crate::weights::{StateDict, WeightLoader};

/// Which towers a model was loaded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Towers {
    Both,
    Image,
    Text,
}

impl Towers {
    pub fn has_image(self) -> bool {
        matches!(self, Towers::Both | Towers::Image)
    }

    pub fn has_text(self) -> bool {
        matches!(self, Towers::Both | Towers::Text)
    }

    /// State-dict keys of the image tower (and `logit_scale`, which travels with it); every
    /// other key belongs to the text tower. True for both open_clip model classes.
    pub fn image_key(key: &str) -> bool {
        key.starts_with("visual.") || key == "logit_scale"
    }
}

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
        Self::from_state_dict_towers(cfg, weights, Towers::Both, device)
    }

    /// As [`Clip::from_state_dict`], but only the towers asked for (`logit_scale` goes with the
    /// image tower). The other tower keeps lazy, never-materialised parameters: it costs no
    /// memory, and [`Clip::load_text_tower`] can fill it in later (the browser fetches the text
    /// tower only when custom labels need it).
    pub fn from_state_dict_towers(
        cfg: &ClipConfig,
        weights: StateDict,
        towers: Towers,
        device: &Device,
    ) -> Result<Self> {
        let mut model = Clip::new(cfg, device);
        let mut w = WeightLoader::new(weights, device);
        if towers.has_image() {
            model.visual.load(&mut w, cfg)?;
            model.logit_scale = w.param("logit_scale", [1])?;
        }
        if towers.has_text() {
            model.text.load(&mut w, cfg)?;
        }
        w.finish()?;
        Ok(model)
    }

    /// Loads the text tower from a state dict that holds exactly its tensors.
    pub fn load_text_tower(&mut self, cfg: &ClipConfig, weights: StateDict, device: &Device) -> Result<()> {
        let mut w = WeightLoader::new(weights, device);
        self.text.load(&mut w, cfg)?;
        w.finish()
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
