//! Where the image agrees with a class: each patch token of the image tower, projected into the
//! shared embedding space as the pooled token is (see `forward_with_patches` of the towers), is
//! compared (cosine) with the class's text embedding. A teaching aid, not an explanation of the
//! model's decision: the class score uses the pooled token, not these.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::knowledge::zero_shot::{l2_normalize, softmax, ZERO_SHOT_SCALE};

/// The map for one class over the patch grid, row-major (row 0 is the top of the model's crop).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeatMap {
    /// The class the map is for.
    pub label: String,
    pub rows: usize,
    pub cols: usize,
    /// Each patch's cosine similarity with the class embedding, in [-1, 1].
    pub cosine: Vec<f32>,
    /// softmax over the patches of 100·cosine (the zero-shot classifier's scale): non-negative,
    /// sums to 1, the share of the agreement each patch holds.
    pub share: Vec<f32>,
}

/// The map of `patches` (`rows × cols` embeddings, row-major) against a class weight (unit length).
pub fn heat_map(label: &str, patches: &[Vec<f32>], class_weight: &[f32]) -> Result<HeatMap> {
    let n = patches.len();
    let side = (n as f64).sqrt().round() as usize;
    if n == 0 || side * side != n {
        return Err(Error::Input(format!("{n} patch tokens do not make a square grid")));
    }
    if patches.iter().any(|p| p.len() != class_weight.len()) {
        return Err(Error::Input("patch tokens and the class embedding differ in size".into()));
    }
    let w = l2_normalize(class_weight);
    let cosine: Vec<f32> =
        patches.iter().map(|p| l2_normalize(p).iter().zip(&w).map(|(a, b)| a * b).sum::<f32>()).collect();
    if cosine.iter().any(|c| !c.is_finite()) {
        return Err(Error::Input("the heat-map is not finite".into()));
    }
    let share = softmax(&cosine.iter().map(|c| ZERO_SHOT_SCALE * c).collect::<Vec<_>>());
    Ok(HeatMap { label: label.to_string(), rows: side, cols: side, cosine, share })
}
