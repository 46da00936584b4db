//! open_clip's `CLIP` / `CustomTextCLIP`: the two towers and `logit_scale`. The config picks each
//! tower's graph: open_clip's ViT or the Derm1M fork's PanDerm ViT; the CLIP text transformer or a
//! Hugging Face BERT.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Int, Tensor};

use crate::config::{ClipConfig, TextArch, VisionArch};
use crate::error::Result;
use crate::model::bert::{BertTextEncoder, OPTIONAL_BUFFERS};
use crate::model::panderm::PanDermVisionTransformer;
use crate::model::text::TextTransformer;
use crate::model::vision::VisionTransformer;
use crate::weights::{StateDict, TensorVisitor, WeightLoader};

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
pub enum VisionTower {
    Vit(VisionTransformer),
    PanDerm(PanDermVisionTransformer),
}

impl VisionTower {
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        match cfg.vision.arch {
            VisionArch::OpenClip => VisionTower::Vit(VisionTransformer::new(cfg, device)),
            VisionArch::PanDerm => VisionTower::PanDerm(PanDermVisionTransformer::new(cfg, device)),
        }
    }

    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            VisionTower::Vit(v) => v.forward(images),
            VisionTower::PanDerm(v) => v.forward(images),
        }
    }

    /// The linear-probe feature: PanDerm's pre-`head` feature (`width`-d), open_clip's ViT's
    /// projected embedding (the paper probes DermLIP-ViT-B/16 on its 512-d output).
    pub fn forward_features(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            VisionTower::Vit(v) => v.forward(images),
            VisionTower::PanDerm(v) => v.forward_features(images),
        }
    }

    /// The embedding and the projected patch tokens `[batch, patches, embed_dim]` (see each tower's
    /// `forward_with_patches`).
    pub fn forward_with_patches(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        match self {
            VisionTower::Vit(v) => v.forward_with_patches(images),
            VisionTower::PanDerm(v) => v.forward_with_patches(images),
        }
    }

    /// The open_clip ViT, if this is one.
    pub fn vit(&self) -> Option<&VisionTransformer> {
        match self {
            VisionTower::Vit(v) => Some(v),
            VisionTower::PanDerm(_) => None,
        }
    }

    /// The tower's tensors under their state-dict names, for loading and saving alike.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        match self {
            VisionTower::Vit(t) => t.visit_tensors(v),
            VisionTower::PanDerm(t) => t.visit_tensors(v),
        }
    }

    /// The tower's open_clip random initialisation (see each tower's `init_parameters`).
    pub fn init_parameters(self) -> Self {
        match self {
            VisionTower::Vit(t) => VisionTower::Vit(t.init_parameters()),
            VisionTower::PanDerm(t) => VisionTower::PanDerm(t.init_parameters()),
        }
    }
}

// One per model, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum TextTower {
    Clip(TextTransformer),
    Bert(BertTextEncoder),
}

impl TextTower {
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        match cfg.text.arch {
            TextArch::Clip => TextTower::Clip(TextTransformer::new(cfg, device)),
            TextArch::Bert(_) => TextTower::Bert(BertTextEncoder::new(cfg, device)),
        }
    }

    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        match self {
            TextTower::Clip(t) => t.forward(ids),
            TextTower::Bert(t) => t.forward(ids),
        }
    }

    /// The CLIP text transformer, if this is one.
    pub fn clip(&self) -> Option<&TextTransformer> {
        match self {
            TextTower::Clip(t) => Some(t),
            TextTower::Bert(_) => None,
        }
    }

    /// The tower's tensors under their state-dict names, for loading and saving alike.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor) -> Result<()> {
        match self {
            TextTower::Clip(t) => t.visit_tensors(v),
            TextTower::Bert(t) => t.visit_tensors(v),
        }
    }

    /// The tower's open_clip random initialisation (see each tower's `init_parameters`).
    pub fn init_parameters(self) -> Self {
        match self {
            TextTower::Clip(t) => TextTower::Clip(t.init_parameters()),
            TextTower::Bert(t) => TextTower::Bert(t.init_parameters()),
        }
    }
}

#[derive(Module, Debug)]
pub struct Clip {
    pub visual: VisionTower,
    pub text: TextTower,
    /// ln of the contrastive temperature, shape `[1]` (0-d in PyTorch).
    pub logit_scale: Param<Tensor<1>>,
}

impl Clip {
    /// A randomly initialised model (parameters are created lazily, on first use).
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        Clip {
            visual: VisionTower::new(cfg, device),
            text: TextTower::new(cfg, device),
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
        let weights = if towers.has_text() { without_optional_buffers(weights) } else { weights };
        let mut w = WeightLoader::new(weights, device);
        model.visit_tensors(&mut w, towers)?;
        w.finish()?;
        Ok(model)
    }

    /// Loads the text tower from a state dict that holds exactly its tensors. `cfg` is the config
    /// the model was built from (the tower's shapes are its own).
    pub fn load_text_tower(&mut self, _cfg: &ClipConfig, weights: StateDict, device: &Device) -> Result<()> {
        let mut w = WeightLoader::new(without_optional_buffers(weights), device);
        self.text.visit_tensors(&mut w)?;
        w.finish()
    }

    /// The model's tensors under open_clip's state-dict names, tower by tower (`logit_scale`
    /// goes with the image tower): the one walk that [`Clip::from_state_dict_towers`] loads
    /// through and `checkpoint::export` saves through.
    pub fn visit_tensors(&mut self, v: &mut impl TensorVisitor, towers: Towers) -> Result<()> {
        if towers.has_image() {
            self.visual.visit_tensors(v)?;
            v.scalar("logit_scale", &mut self.logit_scale)?;
        }
        if towers.has_text() {
            self.text.visit_tensors(v)?;
        }
        Ok(())
    }

    /// open_clip's random initialisation of a fresh model, tower by tower in module order (image,
    /// then text; `logit_scale` keeps ln(1/0.07)). Each parameter the towers re-initialise is
    /// drawn in that order, so a seeded device gives the same model every time.
    pub fn init_parameters(mut self) -> Self {
        self.visual = self.visual.init_parameters();
        self.text = self.text.init_parameters();
        self
    }

    /// The model with training-time dropout rates `d` (open_clip's ViT `patch_dropout`; a BERT
    /// text tower's hidden and attention-probability dropouts; the other towers have none). They
    /// act only in a forward on an autodiff device; `Dropouts::default()` turns them off again.
    pub fn with_dropouts(mut self, d: crate::model::Dropouts) -> Self {
        if let VisionTower::Vit(v) = &mut self.visual {
            v.patch_dropout = d.patch;
        }
        if let TextTower::Bert(t) = &mut self.text {
            t.hidden_dropout = d.hidden;
            t.attention_dropout = d.attention;
        }
        self
    }

    /// `[batch, 3, size, size]` normalised images → unnormalised `[batch, embed_dim]`.
    pub fn encode_image(&self, images: Tensor<4>) -> Tensor<2> {
        self.visual.forward(images)
    }

    /// [`Clip::encode_image`] and the projected patch tokens (see [`VisionTower::forward_with_patches`]).
    pub fn encode_image_with_patches(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        self.visual.forward_with_patches(images)
    }

    /// The linear-probe image feature: see [`VisionTower::forward_features`].
    pub fn encode_image_features(&self, images: Tensor<4>) -> Tensor<2> {
        self.visual.forward_features(images)
    }

    /// `[batch, context_length]` token ids → unnormalised `[batch, embed_dim]`.
    pub fn encode_text(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        self.text.forward(ids)
    }
}

fn without_optional_buffers(mut weights: StateDict) -> StateDict {
    for key in OPTIONAL_BUFFERS {
        weights.remove(key);
    }
    weights
}
