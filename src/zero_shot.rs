//! Zero-shot classification as the Derm1M / open_clip protocol: per class, the mean of the
//! L2-normalised template embeddings, re-normalised; logits = 100·cos; softmax.

use serde::Serialize;

use crate::error::{Error, Result};

/// Derm1M's eight zero-shot skin templates (`OPENAI_SKIN_TEMPLATES`); `{c}` is the class name.
pub use crate::labels::ZERO_SHOT_TEMPLATES as SKIN_TEMPLATES;

/// The fixed logit scale of the evaluation protocol (not the trained `logit_scale`).
pub const ZERO_SHOT_SCALE: f32 = 100.0;

/// Puts a class name into a template written with `{c}` (open_clip's f-strings) or `{}`.
pub fn fill_template(template: &str, class: &str) -> String {
    if template.contains("{c}") {
        template.replace("{c}", class)
    } else if template.contains("{}") {
        template.replace("{}", class)
    } else {
        format!("{template} {class}")
    }
}

/// Checks a label list: non-empty, no blank or duplicate names.
pub fn validate_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::Input("no labels given".into()));
    }
    for (i, l) in labels.iter().enumerate() {
        if l.trim().is_empty() {
            return Err(Error::Input(format!("label {} is empty", i + 1)));
        }
        if labels[..i].iter().any(|o| o.trim() == l.trim()) {
            return Err(Error::Input(format!("label \"{}\" is given twice", l.trim())));
        }
    }
    Ok(())
}

pub fn validate_templates(templates: &[String]) -> Result<()> {
    if templates.is_empty() {
        return Err(Error::Input("no templates given".into()));
    }
    if let Some(t) = templates.iter().find(|t| !t.contains("{c}") && !t.contains("{}")) {
        return Err(Error::Input(format!("template \"{t}\" has no {{c}} placeholder for the class name")));
    }
    Ok(())
}

pub fn l2_normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let norm = norm.max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

/// One classifier row per class from `templates_per_class` consecutive text embeddings.
pub fn class_weights(text_embeddings: &[Vec<f32>], templates_per_class: usize) -> Vec<Vec<f32>> {
    text_embeddings
        .chunks(templates_per_class)
        .map(|chunk| {
            let dim = chunk[0].len();
            let mut mean = vec![0f32; dim];
            for e in chunk {
                for (m, x) in mean.iter_mut().zip(l2_normalize(e)) {
                    *m += x;
                }
            }
            mean.iter_mut().for_each(|m| *m /= chunk.len() as f32);
            l2_normalize(&mean)
        })
        .collect()
}

/// 100·cos between one image embedding and every class row.
pub fn logits(image_embedding: &[f32], weights: &[Vec<f32>]) -> Vec<f32> {
    let img = l2_normalize(image_embedding);
    weights.iter().map(|w| ZERO_SHOT_SCALE * w.iter().zip(&img).map(|(a, b)| a * b).sum::<f32>()).collect()
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub probability: f32,
    pub logit: f32,
}

/// The `k` most probable classes, best first (ties keep label order).
pub fn top_k(labels: &[String], logits: &[f32], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction { label: labels[i].clone(), index: i, probability: probs[i], logit: logits[i] })
        .collect()
}
