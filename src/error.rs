use crate::preprocess::PreprocessError;
use crate::tokenizer::TokenizerError;

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
