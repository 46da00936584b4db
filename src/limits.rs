//! Every size limit the crate enforces on its inputs, in one place (ARCHITECTURE.md, README's
//! threat model). The modules that check them and the messages that name them read them from here.

/// The shorter image side must be at least this many pixels.
pub const MIN_SIDE: u32 = 16;
/// The longer side may be at most this many times the shorter one.
pub const MAX_ASPECT: u32 = 20;
/// Most scans one JPEG may hold (libjpeg-turbo's hardened build refuses after 1000 too); checked by
/// the header probe, before any decoder runs.
pub const MAX_JPEG_SCANS: usize = 1000;
/// All scans of a JPEG together may read each DCT coefficient of the frame at most this many times.
/// A well-formed progressive file reads one at most 14 times (a first scan and 13 refinements);
/// a scan bomb (many small scans over a large frame) is refused before it is walked.
pub const MAX_JPEG_COEFFICIENT_PASSES: u64 = 16;
/// Most palette colours the BMP header probe reads (8 bits per pixel); a header declaring more is
/// left to the image crate's decoder, which refuses it.
pub const MAX_BMP_COLORS: usize = 256;

/// Upper bound accepted by `ClipTokenizer::with_context_length` (guards against huge allocations).
pub const MAX_CONTEXT_LENGTH: usize = 1 << 16;

/// Longest text (a label, a template, a caption, a filled prompt) the tokenizers accept, in
/// UTF-8 bytes. Only the first 77 tokens are used; cleaning and BPE run over the whole text, so
/// a longer one is refused before either runs.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Most class-name placeholders (`{c}` or `{}`) one zero-shot template may hold (each copies the
/// label into the prompt).
pub const MAX_TEMPLATE_PLACEHOLDERS: usize = 8;

/// Largest weight file read (safetensors or PyTorch), and the most tensor bytes one file may
/// declare in total (checked from the header / pickle, before any tensor data is read).
pub const MAX_WEIGHTS_BYTES: u64 = 8 << 30;
/// Largest safetensors JSON header (the safetensors crate's own limit).
pub const MAX_SAFETENSORS_HEADER_BYTES: usize = 100 << 20;
/// Most dimensions one stored tensor may have.
pub const MAX_TENSOR_RANK: usize = 8;

/// Largest training sample the trainer reads (an image file, a zip member, a tar entry),
/// whatever its header declares.
pub const MAX_SAMPLE_BYTES: u64 = 64 << 20;
