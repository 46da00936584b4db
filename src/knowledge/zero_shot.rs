//! Zero-shot classification as the Derm1M / open_clip protocol: per class, the mean of the
//! L2-normalised template embeddings, re-normalised; logits = 100·cos; softmax.

use serde::Serialize;

use crate::error::{Error, Result};

pub use crate::knowledge::labels::ZERO_SHOT_TEMPLATES;

/// [`ZERO_SHOT_TEMPLATES`] as owned strings: the templates used when none are given.
pub fn zero_shot_templates() -> Vec<String> {
    ZERO_SHOT_TEMPLATES.iter().map(|s| s.to_string()).collect()
}

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

/// Checks a label list: non-empty, no blank, over-long or duplicate names (one pass, a set).
pub fn validate_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::Input("no labels given".into()));
    }
    let mut seen = std::collections::HashSet::with_capacity(labels.len());
    for (i, l) in labels.iter().enumerate() {
        if l.trim().is_empty() {
            return Err(Error::Input(format!("label {} is empty", i + 1)));
        }
        check_text_size("label", i, l)?;
        if !seen.insert(l.trim()) {
            return Err(Error::Input(format!("label \"{}\" is given twice", l.trim())));
        }
    }
    Ok(())
}

pub fn validate_templates(templates: &[String]) -> Result<()> {
    if templates.is_empty() {
        return Err(Error::Input("no templates given".into()));
    }
    for (i, t) in templates.iter().enumerate() {
        check_text_size("template", i, t)?;
    }
    if let Some(t) = templates.iter().find(|t| !t.contains("{c}") && !t.contains("{}")) {
        return Err(Error::Input(format!("template \"{t}\" has no {{c}} placeholder for the class name")));
    }
    let max = crate::limits::MAX_TEMPLATE_PLACEHOLDERS;
    for (i, t) in templates.iter().enumerate() {
        let n = if t.contains("{c}") { t.matches("{c}").count() } else { t.matches("{}").count() };
        if n > max {
            return Err(Error::Input(format!(
                "template {} has {n} class-name placeholders; at most {max} are accepted",
                i + 1
            )));
        }
    }
    Ok(())
}

/// A label or template longer than [`MAX_TEXT_BYTES`](crate::limits::MAX_TEXT_BYTES) is refused.
fn check_text_size(what: &str, i: usize, text: &str) -> Result<()> {
    let max = crate::limits::MAX_TEXT_BYTES;
    if text.len() > max {
        return Err(Error::Input(format!("{what} {} is {} bytes long; at most {max} are accepted", i + 1, text.len())));
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
    ranked(labels, logits, &softmax(logits), k)
}

/// [`top_k`] with the probabilities (`softmax(logits)`) already computed.
fn ranked(labels: &[String], logits: &[f32], probs: &[f32], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction { label: labels[i].clone(), index: i, probability: probs[i], logit: logits[i] })
        .collect()
}

/// [`ZeroShotClassifier::classify`] on borrowed class weights and labels.
pub fn classify_embedding(embedding: &[f32], weights: &[Vec<f32>], labels: &[String], k: usize) -> Vec<Prediction> {
    top_k(labels, &logits(embedding, weights), k.max(1))
}

/// A zero-shot classifier: the class names and one weight row per class (see [`class_weights`]).
/// Every caller (CLI, evaluation, web bundle, browser engine) scores an image embedding through
/// it: logits = 100·cos, then softmax.
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroShotClassifier {
    pub labels: Vec<String>,
    pub weights: Vec<Vec<f32>>,
}

/// Everything a classification reports: the `k` best classes and every class's probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// The `k` most probable classes, best first.
    pub predictions: Vec<Prediction>,
    /// One probability per class, in label order.
    pub probabilities: Vec<f32>,
}

impl ZeroShotClassifier {
    /// `weights[i]` is the (L2-normalised) class row of `labels[i]`.
    pub fn new(labels: Vec<String>, weights: Vec<Vec<f32>>) -> Result<Self> {
        if labels.len() != weights.len() {
            return Err(Error::Input(format!("{} labels but {} class weight rows", labels.len(), weights.len())));
        }
        Ok(ZeroShotClassifier { labels, weights })
    }

    /// `templates_per_class` consecutive text embeddings per label (every template for the first
    /// label, then the next) → the classifier.
    pub fn from_text_embeddings(
        labels: Vec<String>,
        text_embeddings: &[Vec<f32>],
        templates_per_class: usize,
    ) -> Result<Self> {
        Self::new(labels, class_weights(text_embeddings, templates_per_class))
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn embed_dim(&self) -> usize {
        self.weights.first().map_or(0, Vec::len)
    }

    /// 100·cos between the image embedding and every class row.
    pub fn logits(&self, embedding: &[f32]) -> Vec<f32> {
        logits(embedding, &self.weights)
    }

    /// Every class's probability, in label order.
    pub fn probabilities(&self, embedding: &[f32]) -> Vec<f32> {
        softmax(&self.logits(embedding))
    }

    /// The `k` (at least one) most probable classes, best first.
    pub fn classify(&self, embedding: &[f32], k: usize) -> Vec<Prediction> {
        classify_embedding(embedding, &self.weights, &self.labels, k)
    }

    /// [`ZeroShotClassifier::classify`] and [`ZeroShotClassifier::probabilities`] from one pass.
    pub fn classify_all(&self, embedding: &[f32], k: usize) -> Classification {
        let logits = self.logits(embedding);
        let probabilities = softmax(&logits);
        Classification { predictions: ranked(&self.labels, &logits, &probabilities, k.max(1)), probabilities }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classifier_is_softmax_of_the_logits_bit_for_bit() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let text = vec![
            vec![1.0, 0.0, 0.2],
            vec![0.9, 0.1, 0.0],
            vec![0.0, 1.0, 0.3],
            vec![0.2, 0.8, -0.1],
            vec![-1.0, 0.5, 0.4],
            vec![-0.8, 0.3, 0.9],
        ];
        let c = ZeroShotClassifier::from_text_embeddings(labels.clone(), &text, 2).unwrap();
        assert_eq!(c.weights, class_weights(&text, 2));
        assert_eq!((c.len(), c.embed_dim()), (3, 3));
        let image = [0.3f32, 0.7, -0.2];
        let l = logits(&image, &c.weights);
        assert_eq!(c.logits(&image), l);
        assert_eq!(c.probabilities(&image), softmax(&l));
        assert_eq!(c.classify(&image, 2), top_k(&labels, &l, 2));
        assert_eq!(c.classify(&image, 2), classify_embedding(&image, &c.weights, &labels, 2));
        let all = c.classify_all(&image, 2);
        assert_eq!(all.predictions, top_k(&labels, &l, 2));
        assert_eq!(all.probabilities, softmax(&l));
        assert_eq!(c.classify(&image, 0).len(), 1, "k is at least one");
        assert!(ZeroShotClassifier::new(labels, vec![vec![1.0]]).is_err());
    }
}
