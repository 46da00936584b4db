use crate::limits::{MAX_ASPECT, MAX_CONTEXT_LENGTH, MIN_SIDE};

/// Every failure the crate reports. Messages are one line and name the thing that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("image: {0}")]
    Image(#[from] PreprocessError),
    #[error("text: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("{0}")]
    Input(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The message without the category prefix, for wrapping it with more context.
    pub fn detail(&self) -> String {
        match self {
            Error::Config(m) | Error::Weights(m) | Error::Input(m) | Error::Device(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

/// An image that cannot be decoded or preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty image: the input has zero bytes")]
    Empty,
    #[error("unrecognised image data: not a JPEG, PNG, WebP, GIF or BMP file")]
    UnknownFormat,
    #[error("unsupported image format {0}: expected JPEG, PNG, WebP, GIF or BMP")]
    UnsupportedFormat(String),
    #[error(
        "image is {width}x{height} ({:.2} megapixels), above the limit of {:.2} megapixels: crop it to the skin area or make it smaller",
        *pixels as f64 / 1e6, *max_pixels as f64 / 1e6
    )]
    TooManyPixels { width: u32, height: u32, pixels: u64, max_pixels: u64 },
    #[error("image is {width}x{height}: the shorter side must be at least {MIN_SIDE} pixels")]
    TooSmall { width: u32, height: u32 },
    #[error("image is {width}x{height}: the aspect ratio is above {MAX_ASPECT}:1")]
    ExtremeAspect { width: u32, height: u32 },
    #[error("corrupt or truncated {format} image: {message}")]
    Decode { format: &'static str, message: String },
    #[error("invalid preprocessing config: {0}")]
    Config(String),
    #[error("the chosen region {x},{y} {width}x{height} is not inside the {image_width}x{image_height} image")]
    RegionOutside { x: u32, y: u32, width: u32, height: u32, image_width: u32, image_height: u32 },
}

/// Text that cannot be tokenised, or a tokenizer that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("embedded BPE vocabulary is unreadable: {0}")]
    Vocabulary(String),
    #[error("building the BPE tokenizer failed: {0}")]
    Build(String),
    #[error("context length {0} is invalid: it must be between 2 (room for sot and eot) and {MAX_CONTEXT_LENGTH}")]
    ContextLength(usize),
    #[error("BPE encoding failed: {0}")]
    Encode(String),
    #[error("WordPiece tokenizer: {0}")]
    WordPiece(String),
    #[error("the text tower's tokenizer is not loaded (tokenizer.json or vocab.txt)")]
    NotLoaded,
}
