//! Contrastive pretraining of DermLIP on Derm1M with the shared `dermlip::Clip` graph: the data
//! pipeline (CSV + folder/zip, WebDataset shards, the Derm1M augmentation), open_clip's loss,
//! optimiser and schedule, checkpoints with exact resume, in-loop evaluation and the export to
//! open_clip's file layout. See `trainer/README.md`.

pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod evaluate;
pub mod loader;
pub mod loss;
pub mod optim;
pub mod pixels;
pub mod plot;
pub mod rng;
pub mod step;
pub mod synth;
pub mod tensorboard;
pub mod train;
