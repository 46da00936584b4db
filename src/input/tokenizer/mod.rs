//! Text → token ids for a model's text tower: the CLIP BPE of open_clip's `SimpleTokenizer`
//! ([`bpe`]) or a BERT WordPiece from the checkpoint ([`wordpiece`]), both after open_clip's text
//! cleaning ([`clean`]); [`TextIds`] turns their output into the text tower's input.

pub mod bpe;
pub mod clean;
pub mod ids;
pub mod wordpiece;

pub use bpe::{ClipTokenizer, DEFAULT_CONTEXT_LENGTH, EOT_TOKEN, PAD_TOKEN, SOT_TOKEN, VOCAB_SIZE};
pub use clean::{clean_text, clean_whitespace};
pub use ids::{text_pad_id, trim_text_padding, TextIds};
pub use wordpiece::WordPieceTokenizer;

pub use crate::error::TokenizerError;
pub use crate::limits::MAX_CONTEXT_LENGTH;

use crate::config::{ClipConfig, TextArch};
use crate::error::{Error, Result};

/// The tokenizer of a model's text tower: built-in CLIP BPE, or a BERT WordPiece from the checkpoint's
/// files (absent while only the image tower of such a model is loaded).
#[derive(Clone, Debug)]
pub enum TextTokenizer {
    Clip(ClipTokenizer),
    WordPiece(WordPieceTokenizer),
    NotLoaded,
}

impl TextTokenizer {
    /// The config's tokenizer, as inference and training build it: CLIP BPE, or the BERT
    /// WordPiece from its file (`[CLS] … [SEP]`, `[PAD]` = the BERT's `pad_token_id`, which its
    /// forward pass masks out; `NotLoaded` without a file), `context_length` from the config.
    pub fn for_config(config: &ClipConfig) -> Result<Self> {
        let ctx = config.text.context_length;
        match &config.text.arch {
            TextArch::Clip => {
                if config.text.vocab_size != VOCAB_SIZE {
                    return Err(Error::Config(format!(
                        "text_cfg.vocab_size is {}, but the CLIP BPE tokenizer has {VOCAB_SIZE} tokens",
                        config.text.vocab_size
                    )));
                }
                Ok(TextTokenizer::Clip(ClipTokenizer::new()?.with_context_length(ctx)?))
            }
            TextArch::Bert(b) => {
                let Some(file) = &b.tokenizer else { return Ok(TextTokenizer::NotLoaded) };
                let t = WordPieceTokenizer::new(file, ctx)?;
                if t.vocab_size() > config.text.vocab_size {
                    return Err(Error::Config(format!(
                        "the tokenizer has {} tokens but the BERT text tower only {}",
                        t.vocab_size(),
                        config.text.vocab_size
                    )));
                }
                if t.pad_id() != b.pad_token_id {
                    return Err(Error::Config(format!(
                        "the tokenizer pads with id {} but the BERT text tower masks id {}",
                        t.pad_id(),
                        b.pad_token_id
                    )));
                }
                Ok(TextTokenizer::WordPiece(t))
            }
        }
    }

    /// Exactly `context_length` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            TextTokenizer::Clip(t) => t.encode(text),
            TextTokenizer::WordPiece(t) => t.encode(text),
            TextTokenizer::NotLoaded => Err(TokenizerError::NotLoaded),
        }
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    pub fn is_loaded(&self) -> bool {
        !matches!(self, TextTokenizer::NotLoaded)
    }
}

/// Refuses a text longer than [`MAX_TEXT_BYTES`](crate::limits::MAX_TEXT_BYTES) before it is
/// cleaned or encoded (both run over the whole text; only the first tokens are kept).
pub fn check_text_length(text: &str) -> Result<(), TokenizerError> {
    let max = crate::limits::MAX_TEXT_BYTES;
    if text.len() > max {
        let start: String = text.chars().take(32).collect();
        return Err(TokenizerError::Encode(format!(
            "the text \"{}…\" is {} bytes long; at most {max} are accepted",
            start.escape_debug(),
            text.len()
        )));
    }
    Ok(())
}
