//! The CLIP BPE tokenizer with exact open_clip `SimpleTokenizer` parity (ViT-B-16 text tower).
//!
//! Pipeline, in open_clip's order (open_clip 3.3 `tokenizer.py`, `clean='lower'`):
//! 1. `ftfy.fix_text` (the `plsfix` crate, wrapped so that it follows ftfy 6.3 where plsfix differs),
//! 2. `html.unescape` twice (a port of Python's, since `html-escape` lacks legacy and numeric quirks),
//! 3. whitespace collapse with Python's `str.split()` whitespace set, then lowercase,
//! 4. open_clip's regex pre-tokenisation, byte-level mapping and BPE (the `tokenizers` crate),
//! 5. `[sot] + ids + [eot]`, cut to `context_length` with eot forced last, zero padding.
//!
//! Deliberate difference: the literal strings `<start_of_text>` / `<end_of_text>` typed by a user are
//! tokenised as ordinary text, never as the special ids (stock open_clip's regex maps them to 49406/49407).

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

use super::clean::clean_text;
use crate::error::TokenizerError;
use crate::limits::MAX_CONTEXT_LENGTH;

pub const SOT_TOKEN: u32 = 49406;
pub const EOT_TOKEN: u32 = 49407;
pub const PAD_TOKEN: u32 = 0;
pub const VOCAB_SIZE: usize = 49408;
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

const BPE_VOCAB_GZ: &[u8] = include_bytes!("../../../assets/bpe_simple_vocab_16e6.txt.gz");
/// open_clip keeps `merges[1:49152-256-2+1]`: the first 48894 merge lines after the header.
const MERGE_COUNT: usize = 49152 - 256 - 2;

/// open_clip's pattern without the special-token alternatives. `IGNORECASE` is spelled out: in Python's
/// `regex` it only changes `'s` (also matches `'ſ`) and drops U+0345 (matched by no alternative).
fn pretokenize_pattern() -> String {
    format!(
        r"'[sSſ]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[\p{{L}}{l}]+|[\p{{N}}{n}]|[^\s\p{{L}}\p{{N}}\x{{345}}{l}{n}]+",
        l = NEWER_LETTERS,
        n = NEWER_NUMBERS
    )
}

/// Code points that Python's `regex` 2026.11.19 (Unicode 17) counts as `\p{L}` / `\p{N}` but Rust's
/// regex tables (Unicode 16) do not (found by comparing all 1 112 064 code points).
const NEWER_LETTERS: &str = concat!(
    r"\x{558}\x{58b}-\x{58c}\x{88f}\x{c5c}\x{cdc}\x{208f}\x{209d}-\x{209f}\x{a7ce}-\x{a7cf}",
    r"\x{a7d2}\x{a7d4}\x{a7dd}\x{a7e2}\x{a7f1}\x{ab6c}-\x{ab6d}\x{107bb}-\x{107bf}",
    r"\x{10940}-\x{10959}\x{10ec5}-\x{10ec7}\x{10ed9}-\x{10eee}\x{11b0a}\x{11db0}-\x{11ddb}",
    r"\x{11df1}\x{16ea0}-\x{16eb8}\x{16ebb}-\x{16ed3}\x{16ff2}-\x{16ff3}\x{187f8}-\x{187ff}",
    r"\x{18cd6}-\x{18cda}\x{18d09}-\x{18d20}\x{18d80}-\x{18df2}\x{18e00}-\x{19191}",
    r"\x{191a0}-\x{191d2}\x{1b123}-\x{1b128}\x{1b168}\x{1d6a6}\x{1df1f}-\x{1df24}",
    r"\x{1df2b}-\x{1df81}\x{1df90}-\x{1df96}\x{1dfcd}-\x{1dfff}\x{1e6c0}-\x{1e6de}",
    r"\x{1e6e0}-\x{1e6e2}\x{1e6e4}-\x{1e6e5}\x{1e6e7}-\x{1e6ed}\x{1e6f0}-\x{1e6f4}",
    r"\x{1e6fe}-\x{1e6ff}\x{2b73a}-\x{2b73f}\x{2b81e}\x{2cea2}-\x{2cead}\x{323b0}-\x{33479}",
    r"\x{3d000}-\x{3fc3f}",
);
const NEWER_NUMBERS: &str = r"\x{11de0}-\x{11de9}\x{1246f}\x{12475}-\x{1247f}\x{12550}-\x{12686}\x{16ff4}-\x{16ff6}";

/// CLIP BPE tokenizer; cheap to clone (the BPE model and its cache are shared).
#[derive(Clone)]
pub struct ClipTokenizer {
    inner: Arc<Tokenizer>,
    context_length: usize,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer").field("context_length", &self.context_length).finish()
    }
}

impl ClipTokenizer {
    /// Tokenizer over the embedded OpenAI CLIP vocabulary, context length 77.
    pub fn new() -> Result<Self, TokenizerError> {
        let (vocab, merges) = load_vocab_and_merges()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".to_string())
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let split = Split::new(SplitPattern::Regex(pretokenize_pattern()), SplitDelimiterBehavior::Removed, true)
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        let byte_level = ByteLevel::new(false, false, false);
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));
        Ok(Self { inner: Arc::new(tokenizer), context_length: DEFAULT_CONTEXT_LENGTH })
    }

    /// Same tokenizer with another output length (>= 2: sot and eot always fit).
    pub fn with_context_length(self, n: usize) -> Result<Self, TokenizerError> {
        if !(2..=MAX_CONTEXT_LENGTH).contains(&n) {
            return Err(TokenizerError::ContextLength(n));
        }
        Ok(Self { context_length: n, ..self })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Exactly `context_length` ids: sot, BPE ids, eot, zero padding; over-long input keeps eot last.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        super::check_text_length(text)?;
        let cleaned = clean_text(text);
        let encoding = self.inner.encode(cleaned.as_str(), false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let ids = encoding.get_ids();
        let body = ids.len().min(self.context_length - 2);
        let mut out = Vec::with_capacity(self.context_length);
        out.push(SOT_TOKEN);
        out.extend_from_slice(&ids[..body]);
        out.push(EOT_TOKEN);
        out.resize(self.context_length, PAD_TOKEN);
        Ok(out)
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        texts.iter().map(|t| self.encode(t)).collect()
    }
}

/// open_clip's byte -> unicode table, in its order (printable Latin-1 bytes first).
fn bytes_to_unicode() -> Vec<char> {
    let mut bytes: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    chars.into_iter().filter_map(char::from_u32).collect()
}

type VocabAndMerges = (Vocab, Merges);

/// Vocabulary exactly as `SimpleTokenizer.__init__` builds it: 256 byte chars, the same with `</w>`,
/// the 48894 merges joined, then `<start_of_text>`, `<end_of_text>`.
fn load_vocab_and_merges() -> Result<VocabAndMerges, TokenizerError> {
    let reader = BufReader::new(flate2::read::GzDecoder::new(BPE_VOCAB_GZ));
    let mut merges = Vec::with_capacity(MERGE_COUNT);
    for line in reader.lines().skip(1).take(MERGE_COUNT) {
        let line = line.map_err(|e| TokenizerError::Vocabulary(e.to_string()))?;
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
            _ => return Err(TokenizerError::Vocabulary(format!("malformed merge line {line:?}"))),
        }
    }
    if merges.len() != MERGE_COUNT {
        return Err(TokenizerError::Vocabulary(format!("{} merges, expected {MERGE_COUNT}", merges.len())));
    }
    let byte_chars: Vec<String> = bytes_to_unicode().into_iter().map(String::from).collect();
    let words: Vec<String> = byte_chars
        .iter()
        .cloned()
        .chain(byte_chars.iter().map(|c| format!("{c}</w>")))
        .chain(merges.iter().map(|(a, b)| format!("{a}{b}")))
        .chain(["<start_of_text>".to_string(), "<end_of_text>".to_string()])
        .collect();
    if words.len() != VOCAB_SIZE {
        return Err(TokenizerError::Vocabulary(format!("{} vocabulary entries, expected {VOCAB_SIZE}", words.len())));
    }
    let vocab: Vocab = words.into_iter().zip(0u32..).collect();
    if vocab.len() != VOCAB_SIZE {
        return Err(TokenizerError::Vocabulary("duplicate vocabulary entries".to_string()));
    }
    Ok((vocab, merges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_matches_open_clip_layout() {
        let (vocab, merges) = load_vocab_and_merges().unwrap();
        assert_eq!(merges.len(), 48894);
        assert_eq!(vocab["!"], 0);
        assert_eq!(vocab["a</w>"], 256 + 64);
        assert_eq!(vocab["<start_of_text>"], SOT_TOKEN);
        assert_eq!(vocab["<end_of_text>"], EOT_TOKEN);
    }

    #[test]
    fn context_length_bounds() {
        let tok = ClipTokenizer::new().unwrap();
        assert!(tok.clone().with_context_length(1).is_err());
        let tok = tok.with_context_length(2).unwrap();
        assert_eq!(tok.encode("a long caption").unwrap(), vec![SOT_TOKEN, EOT_TOKEN]);
    }

    #[test]
    fn tokenizer_is_send_sync_clone() {
        fn check<T: Clone + Send + Sync>() {}
        check::<ClipTokenizer>();
    }
}
