//! The WordPiece tokenizer of a BERT text tower (DermLIP-PanDerm's PubMedBERT), as open_clip's
//! `HFTokenizer` runs it: `clean='whitespace'` (ftfy, HTML unescape twice, whitespace collapse; no
//! lowercasing here: BERT's own normalizer lowercases and strips accents), then the Hugging Face
//! tokenizer with `max_length=context_length, padding='max_length', truncation=True`:
//! `[CLS] … [SEP]` cut to the context length, then `[PAD]` up to it.
//!
//! The vocabulary comes from the checkpoint directory: `tokenizer.json` (what `save_pretrained`
//! writes; loaded with the `tokenizers` crate, the same code the Python fast tokenizer runs) or a
//! bare `vocab.txt`, assembled the way transformers' `BertTokenizerFast` builds an uncased BERT.

use std::sync::Arc;

use tokenizers::models::bpe::Vocab;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::clean::clean_whitespace;
pub use crate::config::TokenizerFile;
use crate::error::TokenizerError;
use crate::limits::MAX_CONTEXT_LENGTH;

const CLS: &str = "[CLS]";
const SEP: &str = "[SEP]";
const PAD: &str = "[PAD]";
const UNK: &str = "[UNK]";
const MASK: &str = "[MASK]";

/// BERT WordPiece tokenizer with open_clip `HFTokenizer` behaviour; cheap to clone.
#[derive(Clone)]
pub struct WordPieceTokenizer {
    inner: Arc<Tokenizer>,
    context_length: usize,
    pad_id: u32,
}

impl std::fmt::Debug for WordPieceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceTokenizer")
            .field("context_length", &self.context_length)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl WordPieceTokenizer {
    pub fn new(file: &TokenizerFile, context_length: usize) -> Result<Self, TokenizerError> {
        if !(2..=MAX_CONTEXT_LENGTH).contains(&context_length) {
            return Err(TokenizerError::ContextLength(context_length));
        }
        let mut tokenizer = match file {
            TokenizerFile::Json(bytes) => Tokenizer::from_bytes(bytes)
                .map_err(|e| TokenizerError::WordPiece(format!("tokenizer.json is not readable: {e}")))?,
            TokenizerFile::VocabTxt(text) => from_vocab_txt(text)?,
        };
        let pad_id = tokenizer
            .token_to_id(PAD)
            .ok_or_else(|| TokenizerError::WordPiece(format!("the vocabulary has no {PAD} token")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        Ok(WordPieceTokenizer { inner: Arc::new(tokenizer), context_length, pad_id })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Number of ids the tokenizer can produce (the largest id + 1).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab(true).values().max().map_or(0, |&m| m as usize + 1)
    }

    /// Exactly `context_length` ids: `[CLS]`, WordPieces, `[SEP]`, `[PAD]`s.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        super::check_text_length(text)?;
        let cleaned = clean_whitespace(text);
        let encoding = self.inner.encode(cleaned.as_str(), true).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.truncate(self.context_length);
        ids.resize(self.context_length, self.pad_id);
        Ok(ids)
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

/// transformers' `BertTokenizerFast(vocab_file)` (uncased): BERT normalizer (clean text, CJK
/// spacing, lowercase, strip accents), BERT pre-tokenizer, WordPiece with `##` continuations and
/// 100-char words, `[CLS] $A [SEP]`, the five special tokens matched before normalisation.
fn from_vocab_txt(text: &str) -> Result<Tokenizer, TokenizerError> {
    // transformers' `load_vocab`: every line without its "\n" is a token, a repeated token keeps
    // its last line number.
    let body = text.strip_suffix('\n').unwrap_or(text);
    let vocab: Vocab = body.split('\n').zip(0u32..).map(|(t, i)| (t.to_string(), i)).collect();
    let id = |token: &str| {
        vocab.get(token).copied().ok_or_else(|| TokenizerError::WordPiece(format!("vocab.txt has no {token} token")))
    };
    let (cls, sep) = (id(CLS)?, id(SEP)?);
    id(UNK)?;
    let model = WordPiece::builder()
        .vocab(vocab.clone())
        .unk_token(UNK.to_string())
        .continuing_subword_prefix("##".to_string())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_post_processor(Some(BertProcessing::new((SEP.to_string(), sep), (CLS.to_string(), cls))));
    let specials: Vec<AddedToken> = [PAD, UNK, CLS, SEP, MASK]
        .into_iter()
        .filter(|t| vocab.contains_key(*t))
        .map(|t| AddedToken::from(t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}
