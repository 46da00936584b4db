//! Dermatology knowledge and what is built on the embeddings: label sets and templates, the
//! Derm1M ontology, clinical concepts, the is-this-skin check, zero-shot classification and retrieval.

pub mod concepts;
pub mod domain;
pub mod heatmap;
pub mod labels;
pub mod ontology;
pub mod retrieval;
pub mod zero_shot;
