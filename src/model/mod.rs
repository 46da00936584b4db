//! The model graphs, one per tower and the CLIP pair that joins them: what runs on the device.
//! Each tower is built from its config, names its own tensors (load and save share one walk) and
//! owns its random initialisation.

pub mod bert;
pub mod clip;
pub mod kernels;
pub mod layers;
pub mod panderm;
pub mod text;
pub mod transformer;
pub mod vision;

pub use layers::Dropouts;
