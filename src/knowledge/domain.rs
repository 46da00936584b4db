//! Is this a skin photo at all? A zero-shot check that runs beside every classification: the
//! image embedding is compared (cosine) with short prompts for things that are not skin ("a photo
//! of a cat", "a screenshot of text", …) and with the skin side: the label set's classes and a few
//! generic skin prompts. When the closest non-skin prompt beats the closest skin one by more than
//! [`MARGIN`], the answer is "this does not look like a skin photo".
//!
//! The prompts and the margin are provisional: they were chosen on the committed fixture model
//! (random weights, so its verdicts mean nothing) and must be re-measured on the released DermLIP
//! weights before anyone relies on them (docs/fidelity.md, "Out-of-domain check").

use serde::Serialize;

use crate::error::{Error, Result};
use crate::knowledge::zero_shot::{l2_normalize, ZeroShotClassifier};

/// Prompts for a skin photo, beside the label set's own classes.
pub const SKIN_PROMPTS: &[&str] = &[
    "a photo of skin",
    "a close-up photo of human skin",
    "a clinical photo of a skin lesion",
    "a dermoscopy image of a skin lesion",
    "a photo of a rash on the skin",
];

/// Prompts for what people upload by mistake.
pub const OTHER_PROMPTS: &[&str] = &[
    "a photo of a cat",
    "a photo of a dog",
    "a photo of an animal",
    "a photo of food",
    "a photo of a drink",
    "a photo of a landscape",
    "a photo of a building",
    "a photo of a car",
    "a photo of an object",
    "a screenshot of text",
    "a drawing or a logo",
    "a photo of a plant",
    "a photo of a document",
];

/// How much closer (in cosine similarity) the best non-skin prompt must be than the best skin
/// class or prompt. Provisional (see the module documentation).
pub const MARGIN: f32 = 0.0;

/// The check's answer for one image.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainVerdict {
    /// True when the image matches a non-skin prompt better than anything skin.
    pub not_skin: bool,
    /// The best cosine similarity on the skin side, and what it was.
    pub skin_similarity: f32,
    pub closest_skin: String,
    /// The best cosine similarity among the non-skin prompts, and which.
    pub other_similarity: f32,
    pub closest_other: String,
}

/// The prompt embeddings (unit length), from the text tower or a bundle.
#[derive(Clone, Debug)]
pub struct DomainCheck {
    skin: Vec<Vec<f32>>,
    other: Vec<Vec<f32>>,
}

impl DomainCheck {
    /// `skin` and `other` are the embeddings of [`SKIN_PROMPTS`] and [`OTHER_PROMPTS`], in order.
    pub fn new(skin: Vec<Vec<f32>>, other: Vec<Vec<f32>>) -> Result<Self> {
        if skin.len() != SKIN_PROMPTS.len() || other.len() != OTHER_PROMPTS.len() {
            return Err(Error::Input(format!(
                "the out-of-domain check needs {} skin and {} other prompt embeddings, got {} and {}",
                SKIN_PROMPTS.len(),
                OTHER_PROMPTS.len(),
                skin.len(),
                other.len()
            )));
        }
        let dim = skin[0].len();
        if dim == 0 || skin.iter().chain(&other).any(|r| r.len() != dim || r.iter().any(|v| !v.is_finite())) {
            return Err(Error::Input("the out-of-domain prompt embeddings differ in length or are not finite".into()));
        }
        let unit = |rows: Vec<Vec<f32>>| rows.iter().map(|r| l2_normalize(r)).collect();
        Ok(Self { skin: unit(skin), other: unit(other) })
    }

    pub fn dim(&self) -> usize {
        self.skin[0].len()
    }

    /// The skin prompts' embeddings (unit length), in [`SKIN_PROMPTS`] order.
    pub fn skin_rows(&self) -> &[Vec<f32>] {
        &self.skin
    }

    /// The other prompts' embeddings (unit length), in [`OTHER_PROMPTS`] order.
    pub fn other_rows(&self) -> &[Vec<f32>] {
        &self.other
    }

    /// The verdict for an image embedding against a label set's classes (their weights are unit
    /// length, as [`ZeroShotClassifier`] keeps them).
    pub fn check(&self, image_embedding: &[f32], classes: &ZeroShotClassifier) -> DomainVerdict {
        let image = l2_normalize(image_embedding);
        let cos = |w: &[f32]| image.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
        let (skin_similarity, closest_skin) = best(
            classes
                .weights
                .iter()
                .zip(&classes.labels)
                .map(|(w, l)| (cos(w), l.as_str()))
                .chain(self.skin.iter().zip(SKIN_PROMPTS).map(|(w, p)| (cos(w), *p))),
        );
        let (other_similarity, closest_other) = best(self.other.iter().zip(OTHER_PROMPTS).map(|(w, p)| (cos(w), *p)));
        DomainVerdict {
            not_skin: other_similarity > skin_similarity + MARGIN,
            skin_similarity,
            closest_skin: closest_skin.to_string(),
            other_similarity,
            closest_other: closest_other.to_string(),
        }
    }
}

/// The highest similarity and its name (the first on a tie).
fn best<'a>(it: impl Iterator<Item = (f32, &'a str)>) -> (f32, &'a str) {
    it.fold((f32::NEG_INFINITY, ""), |acc, (s, name)| if s > acc.0 { (s, name) } else { acc })
}

/// The prompt lists as owned strings (the bundle's manifest records them).
pub fn prompts() -> (Vec<String>, Vec<String>) {
    let own = |p: &[&str]| p.iter().map(|s| s.to_string()).collect();
    (own(SKIN_PROMPTS), own(OTHER_PROMPTS))
}
