//! The trainer's integration tests in one test binary (each file below used to be its own binary,
//! each linking Burn and the trainer again).

mod gradients;
mod hostile_data;
mod long_run;
mod recipe;
mod trainer;
mod wgpu;
