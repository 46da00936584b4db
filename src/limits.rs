//! Every size limit the crate enforces on its inputs, in one place (ARCHITECTURE.md, README's
//! threat model). The modules that check them and the messages that name them read them from here.

/// The shorter image side must be at least this many pixels.
pub const MIN_SIDE: u32 = 16;
/// The longer side may be at most this many times the shorter one.
pub const MAX_ASPECT: u32 = 20;

/// Upper bound accepted by `ClipTokenizer::with_context_length` (guards against huge allocations).
pub const MAX_CONTEXT_LENGTH: usize = 1 << 16;
