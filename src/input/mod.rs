//! What goes into the towers: image bytes → normalised pixels (PIL-exact), text → token ids.

pub mod preprocess;
pub mod tokenizer;
