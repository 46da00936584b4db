//! The BERT WordPiece tokenizer against transformers' (through open_clip's `HFTokenizer`, context 256):
//! ids of the committed corpus (casing, accents, punctuation, CJK, emoji, control characters, special-
//! token strings, over-long words, empty strings, truncation at 256) from `tokenizer.json` and from a
//! bare `vocab.txt`. Written by `tests/reference/make_panderm_fixtures.py`.

use crate::common;

use common::*;
use dermlip::input::tokenizer::wordpiece::{TokenizerFile, WordPieceTokenizer};
use dermlip::input::tokenizer::TokenizerError;
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    context_length: usize,
    vocab_size: usize,
    texts: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    text: String,
    ids: Vec<u32>,
    /// Whether transformers' pure-Python `BertTokenizer` agrees with the fast one.
    slow_same: bool,
}

fn corpus() -> Corpus {
    let path = fixtures().join("panderm/wordpiece.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn file(name: &str) -> TokenizerFile {
    let bytes = std::fs::read(model_dir("tiny-panderm").join(name)).unwrap();
    TokenizerFile::from_named_bytes(name, bytes).unwrap()
}

fn check(tok: &WordPieceTokenizer, c: &Corpus) {
    for e in &c.texts {
        assert_eq!(tok.encode(&e.text).unwrap(), e.ids, "ids of {:?}", e.text);
    }
}

#[test]
fn tokenizer_json_matches_transformers() {
    let c = corpus();
    let tok = WordPieceTokenizer::new(&file("tokenizer.json"), c.context_length).unwrap();
    assert_eq!(tok.vocab_size(), c.vocab_size);
    assert_eq!(tok.pad_id(), 0);
    check(&tok, &c);
    // The corpus reaches the limit: truncated texts end in [SEP] at position 255.
    assert!(c.texts.iter().any(|e| e.ids[c.context_length - 1] == 3));
    // transformers' slow and fast tokenizers agree on it, so either is the reference.
    assert!(c.texts.iter().all(|e| e.slow_same));
}

#[test]
fn vocab_txt_matches_transformers() {
    let c = corpus();
    let tok = WordPieceTokenizer::new(&file("vocab.txt"), c.context_length).unwrap();
    assert_eq!(tok.vocab_size(), c.vocab_size);
    check(&tok, &c);
}

#[test]
fn other_context_lengths_cut_and_pad() {
    let c = corpus();
    let tok = WordPieceTokenizer::new(&file("tokenizer.json"), 8).unwrap();
    for e in &c.texts {
        let ids = tok.encode(&e.text).unwrap();
        assert_eq!(ids.len(), 8);
        let body: Vec<u32> = e.ids.iter().copied().filter(|&i| i != 0).collect();
        if body.len() <= 8 {
            assert_eq!(&ids[..body.len()], &body[..], "{:?}", e.text);
        } else {
            assert_eq!(&ids[..7], &body[..7], "{:?}", e.text);
            assert_eq!(ids[7], 3, "[SEP] last");
        }
    }
}

#[test]
fn bad_tokenizer_files_are_errors() {
    let ctx = |n| WordPieceTokenizer::new(&file("vocab.txt"), n).unwrap_err();
    assert!(matches!(ctx(1), TokenizerError::ContextLength(1)));
    let bad_json = WordPieceTokenizer::new(&TokenizerFile::Json(b"{\"version\":".to_vec()), 256).unwrap_err();
    assert!(bad_json.to_string().contains("tokenizer.json"));
    let no_pad = WordPieceTokenizer::new(&TokenizerFile::VocabTxt("[UNK]\n[CLS]\n[SEP]\na\n".into()), 256).unwrap_err();
    assert!(no_pad.to_string().contains("[PAD]"));
    let no_cls = WordPieceTokenizer::new(&TokenizerFile::VocabTxt("[PAD]\n[UNK]\n[SEP]\n".into()), 256).unwrap_err();
    assert!(no_cls.to_string().contains("[CLS]"));
    assert!(TokenizerFile::from_named_bytes("merges.txt", vec![]).is_err());
    assert!(TokenizerFile::from_named_bytes("dir/vocab.txt", vec![0xff]).is_err());
    assert!(matches!(TokenizerFile::from_named_bytes("dir/tokenizer.json", vec![]), Ok(TokenizerFile::Json(_))));
}
