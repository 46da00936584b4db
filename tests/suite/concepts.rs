//! MONET concept presence scores against open_clip + the MONET formula in NumPy
//! (`tests/reference/make_concept_fixtures.py`).

use crate::common;

use burn::tensor::Device;
use common::*;
use dermlip::input::preprocess;
use dermlip::knowledge::concepts::concept_temperature as monet_temperature;
use dermlip::knowledge::concepts::{Concept, ConceptPromptSet};
use dermlip::pipeline::rows;
use dermlip::DermLip;
use serde::Deserialize;

#[derive(Deserialize)]
struct ConceptReference {
    temperature: f32,
    concepts: Vec<Concept>,
    templates: Vec<String>,
    references: Vec<Vec<String>>,
    images: Vec<String>,
    scores: Vec<Vec<f32>>,
}

#[test]
fn concept_scores_match_monet_reference() {
    let path = fixtures().join("concepts/tiny-gelu.json");
    let r: ConceptReference = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!((r.temperature - monet_temperature()).abs() < 1e-9);
    let model = DermLip::load(&model_dir("tiny-gelu"), Device::flex()).unwrap();
    let prompts = ConceptPromptSet { templates: r.templates.clone(), references: r.references.clone() };
    assert_eq!(prompts, ConceptPromptSet::monet());
    let scorer = model.concept_scorer(&r.concepts, &prompts, monet_temperature()).unwrap();
    let pixels: Vec<Vec<f32>> =
        r.images.iter().map(|p| preprocess::normalize(&reference_crop(p), &model.preprocess)).collect();
    let images = rows(model.encode_pixels(&pixels)).unwrap();
    for (i, (img, want)) in images.iter().zip(&r.scores).enumerate() {
        let got = scorer.scores(img);
        let d = max_abs_diff(&got, want);
        assert!(d <= 1e-4, "image {i}: concept scores differ by {d:e}: {got:?} vs {want:?}");
    }
    let top = scorer.top(&images[4], 2);
    assert_eq!(top[0].concept, "black");
}

#[test]
fn concept_inputs_are_validated() {
    let prompts =
        ConceptPromptSet { templates: vec!["a {}".into(), "b {}".into()], references: vec![vec!["a".into()]] };
    assert!(prompts.validate().unwrap_err().to_string().contains("2 concept templates but 1"));
    let model = DermLip::load(&model_dir("tiny-gelu"), Device::flex()).unwrap();
    let prompts = ConceptPromptSet { templates: vec!["a {}".into()], references: vec![vec!["a".into()]] };
    let empty = Concept { name: "scale".into(), terms: vec![] };
    let err = model.concept_scorer(&[empty], &prompts, monet_temperature()).unwrap_err();
    assert!(err.to_string().contains("\"scale\" has no terms"), "{err}");
}
