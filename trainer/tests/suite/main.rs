//! The trainer's integration tests in one test binary (each file below used to be its own binary,
//! each linking Burn and the trainer again).

mod gradients;
mod hostile_data;
mod long_run;
mod recipe;
mod trainer;
mod wgpu;

/// Burn's CPU RNG (model initialisation, dropout masks) is process-global: a test that seeds it
/// and draws from it takes its turn through this one lock, so no other test's draws interleave
/// (the modules below share this binary, hence one lock for all of them).
pub(crate) fn rng_turn() -> std::sync::MutexGuard<'static, ()> {
    static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
