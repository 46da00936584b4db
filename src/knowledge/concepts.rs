//! Clinical concept presence scores, as MONET defines them and Derm1M evaluates them.
//!
//! For a concept c with synonym terms k and prompt templates t (each with a reference prompt
//! r_t, e.g. "This is skin image of {}" / "This is skin image"):
//!
//! score(img, c) = mean_t σ( (mean_k cos(img, t(k)) − mean cos(img, r_t)) / T ),  T = 1/exp(4.5944)
//!
//! (σ of the difference is MONET's two-way softmax over [target, reference].) Everything except
//! the image embedding can be computed once per concept list, which is what [`ConceptScorer`]
//! holds, so a page can ship it precomputed.

use std::fmt;
use std::sync::OnceLock;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::knowledge::zero_shot::{fill_template, l2_normalize};

/// MONET's term lists as shipped with Derm1M (`ConceptTerms.json`).
const CONCEPT_TERMS_JSON: &str = include_str!("../../data/ConceptTerms.json");

/// MONET concept templates (`concept_prompt_template_list`); `{}` is a concept term.
pub const CONCEPT_TEMPLATES: [&str; 6] = [
    "This is skin image of {}",
    "This is dermatology image of {}",
    "This is image of {}",
    "A skin image of {}",
    "An image of {}, a skin condition.",
    "{}, a skin disorder, is shown in this image.",
];

/// The reference prompt of each concept template (`concept_prompt_ref_list`), same order.
pub const CONCEPT_REFERENCE_PROMPTS: [&str; 6] = [
    "This is skin image",
    "This is dermatology image",
    "This is image",
    "A skin image",
    "An image of a skin condition.",
    "a skin disorder is shown in this image.",
];

/// ln of the concept logit scale: the temperature is 1 / exp(4.5944) (`concept_annotation/model.py`).
pub const CONCEPT_LOG_SCALE: f32 = 4.5944;

/// MONET's concept temperature, 1 / exp(4.5944) ≈ 0.010108.
pub fn concept_temperature() -> f32 {
    (-CONCEPT_LOG_SCALE).exp()
}

/// The 64 concepts of `ConceptTerms.json` (MONET's term lists as shipped with Derm1M), in file order.
pub fn concepts() -> &'static [Concept] {
    static CONCEPTS: OnceLock<Vec<Concept>> = OnceLock::new();
    CONCEPTS.get_or_init(|| {
        // Fixed at build time; tests/suite/knowledge.rs checks the count and order.
        serde_json::from_str::<OrderedConcepts>(CONCEPT_TERMS_JSON).map(|c| c.0).unwrap_or_default()
    })
}

/// A JSON object read in document order (serde_json's own map sorts its keys).
struct OrderedConcepts(Vec<Concept>);

impl<'de> Deserialize<'de> for OrderedConcepts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedConcepts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of concept name → list of terms")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedConcepts, A::Error> {
                let mut out = Vec::new();
                while let Some((name, terms)) = map.next_entry::<String, Vec<String>>()? {
                    out.push(Concept { name, terms });
                }
                Ok(OrderedConcepts(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A concept and the synonym terms that are put into the templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concept {
    pub name: String,
    pub terms: Vec<String>,
}

/// The prompt templates with their reference prompts (one or more per template).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConceptPromptSet {
    pub templates: Vec<String>,
    pub references: Vec<Vec<String>>,
}

impl ConceptPromptSet {
    /// MONET's six templates and their reference prompts, as Derm1M uses them.
    pub fn monet() -> Self {
        ConceptPromptSet {
            templates: CONCEPT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
            references: CONCEPT_REFERENCE_PROMPTS.iter().map(|s| vec![s.to_string()]).collect(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.templates.is_empty() {
            return Err(Error::Input("no concept templates given".into()));
        }
        if self.templates.len() != self.references.len() {
            return Err(Error::Input(format!(
                "{} concept templates but {} reference prompt lists",
                self.templates.len(),
                self.references.len()
            )));
        }
        if let Some(i) = self.references.iter().position(Vec::is_empty) {
            return Err(Error::Input(format!("concept template {} has no reference prompt", i + 1)));
        }
        Ok(())
    }
}

/// Every text to embed, in the order [`ConceptScorer::from_text_embeddings`] expects: for each
/// concept, for each template, each term; then every reference prompt, template by template.
pub fn concept_prompts(concepts: &[Concept], prompts: &ConceptPromptSet) -> Vec<String> {
    let mut out = Vec::new();
    for c in concepts {
        for t in &prompts.templates {
            out.extend(c.terms.iter().map(|term| fill_template(t, term)));
        }
    }
    out.extend(prompts.references.iter().flatten().cloned());
    out
}

/// Precomputed concept directions: per concept and template, the mean of the normalised term
/// embeddings minus the mean normalised reference embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConceptScorer {
    pub concepts: Vec<String>,
    pub temperature: f32,
    /// `[concept][template]` → a vector v with score term σ(img·v / T).
    pub directions: Vec<Vec<Vec<f32>>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConceptScore {
    pub concept: String,
    pub score: f32,
}

impl ConceptScorer {
    /// `embeddings` are the (unnormalised) text embeddings of [`concept_prompts`], in order.
    pub fn from_text_embeddings(
        concepts: &[Concept],
        prompts: &ConceptPromptSet,
        embeddings: &[Vec<f32>],
        temperature: f32,
    ) -> Result<Self> {
        prompts.validate()?;
        if let Some(c) = concepts.iter().find(|c| c.terms.is_empty()) {
            return Err(Error::Input(format!("concept \"{}\" has no terms", c.name)));
        }
        let expected = concept_prompts(concepts, prompts).len();
        if embeddings.len() != expected {
            return Err(Error::Input(format!("{} text embeddings for {expected} concept prompts", embeddings.len())));
        }
        let normalised: Vec<Vec<f32>> = embeddings.iter().map(|e| l2_normalize(e)).collect();
        let mut rest = normalised.as_slice();
        let mut targets = Vec::with_capacity(concepts.len());
        for c in concepts {
            let mut per_template = Vec::with_capacity(prompts.templates.len());
            for _ in &prompts.templates {
                let (terms, tail) = rest.split_at(c.terms.len());
                per_template.push(mean(terms));
                rest = tail;
            }
            targets.push(per_template);
        }
        let mut references = Vec::with_capacity(prompts.references.len());
        for refs in &prompts.references {
            let (these, tail) = rest.split_at(refs.len());
            references.push(mean(these));
            rest = tail;
        }
        let directions = targets
            .into_iter()
            .map(|per_t| {
                per_t.into_iter().zip(&references).map(|(t, r)| t.iter().zip(r).map(|(a, b)| a - b).collect()).collect()
            })
            .collect();
        Ok(ConceptScorer { concepts: concepts.iter().map(|c| c.name.clone()).collect(), temperature, directions })
    }

    /// Presence score in (0, 1) of every concept, in concept order.
    pub fn scores(&self, image_embedding: &[f32]) -> Vec<f32> {
        let img = l2_normalize(image_embedding);
        self.directions
            .iter()
            .map(|per_t| {
                let sum: f32 = per_t
                    .iter()
                    .map(|d| sigmoid(d.iter().zip(&img).map(|(a, b)| a * b).sum::<f32>() / self.temperature))
                    .sum();
                sum / per_t.len() as f32
            })
            .collect()
    }

    /// The `k` highest-scoring concepts, best first.
    pub fn top(&self, image_embedding: &[f32], k: usize) -> Vec<ConceptScore> {
        let scores = self.scores(image_embedding);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|i| ConceptScore { concept: self.concepts[i].clone(), score: scores[i] })
            .collect()
    }
}

fn mean(rows: &[Vec<f32>]) -> Vec<f32> {
    let mut m = vec![0f32; rows[0].len()];
    for r in rows {
        m.iter_mut().zip(r).for_each(|(a, b)| *a += b);
    }
    m.iter_mut().for_each(|a| *a /= rows.len() as f32);
    m
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
