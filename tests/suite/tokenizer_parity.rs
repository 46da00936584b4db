//! Parity of dermlip's CLIP tokenizer with open_clip 3.3 `SimpleTokenizer` (ViT-B-16, clean='lower').
//! Fixtures come from tests/reference/make_token_fixtures.py; see tests/fixtures/tokenizer/KNOWN_DIFFERENCES.md.

use std::path::Path;

use dermlip::input::tokenizer::{
    clean_text, ClipTokenizer, TokenizerError, DEFAULT_CONTEXT_LENGTH, EOT_TOKEN, PAD_TOKEN, SOT_TOKEN, VOCAB_SIZE,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

#[derive(Deserialize)]
struct KnownDifference {
    index: usize,
    text: String,
    reason: String,
    open_clip_clean: String,
    dermlip_clean: String,
    dermlip_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct StockSpecial {
    index: usize,
    text: String,
    stock_open_clip_ids: Vec<u32>,
}

struct Fixtures {
    corpus: Vec<String>,
    ids: Vec<Vec<u32>>,
    clean: Vec<Option<String>>,
    known: Vec<KnownDifference>,
}

fn fixtures() -> Fixtures {
    let f = Fixtures {
        corpus: fixture("corpus.json"),
        ids: fixture("expected_ids.json"),
        clean: fixture("expected_clean.json"),
        known: fixture("known_differences.json"),
    };
    assert_eq!(f.corpus.len(), f.ids.len(), "corpus and expected ids differ in length");
    assert_eq!(f.corpus.len(), f.clean.len(), "corpus and expected clean texts differ in length");
    for k in &f.known {
        assert_eq!(f.corpus[k.index], k.text, "known difference {} points at another corpus entry", k.index);
    }
    f
}

fn known_at(known: &[KnownDifference], i: usize) -> Option<&KnownDifference> {
    known.iter().find(|k| k.index == i)
}

#[test]
fn ids_match_open_clip_on_the_whole_corpus() {
    let f = fixtures();
    let tok = ClipTokenizer::new().expect("tokenizer");
    assert!(f.corpus.len() >= 500, "corpus too small: {}", f.corpus.len());
    assert!(f.known.len() <= 5, "too many known differences: {}", f.known.len());
    let mut mismatches = Vec::new();
    for (i, (text, expected)) in f.corpus.iter().zip(&f.ids).enumerate() {
        let got = tok.encode(text).expect("encode");
        match known_at(&f.known, i) {
            Some(k) => {
                assert_ne!(&k.dermlip_ids, expected, "known difference {i} no longer differs: remove it");
                if got != k.dermlip_ids {
                    mismatches.push(format!("#{i} {text:?} (known: {}): got {got:?}", k.reason));
                }
            }
            None if &got != expected => mismatches.push(format!("#{i} {text:?}: got {got:?}, want {expected:?}")),
            None => {}
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} entries differ:\n{}",
        mismatches.len(),
        f.corpus.len(),
        mismatches.join("\n")
    );
}

#[test]
fn clean_text_matches_open_clip_lower_cleaning() {
    let f = fixtures();
    let mut mismatches = Vec::new();
    for (i, (text, expected)) in f.corpus.iter().zip(&f.clean).enumerate() {
        let Some(expected) = expected else { continue };
        let got = clean_text(text);
        let want = match known_at(&f.known, i) {
            Some(k) => {
                assert_eq!(&k.open_clip_clean, expected, "known difference {i} is stale");
                &k.dermlip_clean
            }
            None => expected,
        };
        if &got != want {
            mismatches.push(format!("#{i} {text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} cleaned texts differ:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn every_output_has_the_clip_layout() {
    let f = fixtures();
    let tok = ClipTokenizer::new().expect("tokenizer");
    for text in &f.corpus {
        let ids = tok.encode(text).expect("encode");
        assert_eq!(ids.len(), DEFAULT_CONTEXT_LENGTH, "{text:?}");
        assert_eq!(ids[0], SOT_TOKEN, "{text:?}: sot first");
        let eot = ids.iter().position(|&id| id == EOT_TOKEN).unwrap_or_else(|| panic!("{text:?}: no eot"));
        assert!(
            ids[1..eot].iter().all(|&id| (id as usize) < SOT_TOKEN as usize),
            "{text:?}: special id inside the text"
        );
        assert!(ids[eot + 1..].iter().all(|&id| id == PAD_TOKEN), "{text:?}: padding after eot is not zeros");
        assert!(ids.iter().all(|&id| (id as usize) < VOCAB_SIZE), "{text:?}: id outside the vocabulary");
    }
}

#[test]
fn over_long_input_is_cut_with_eot_last() {
    let tok = ClipTokenizer::new().expect("tokenizer");
    let long = "erythematous scaly plaque ".repeat(400);
    let ids = tok.encode(&long).expect("encode");
    assert_eq!(ids.len(), DEFAULT_CONTEXT_LENGTH);
    assert_eq!(ids[DEFAULT_CONTEXT_LENGTH - 1], EOT_TOKEN);
    assert!(!ids.contains(&PAD_TOKEN));

    let short = tok.clone().with_context_length(5).expect("context 5");
    assert_eq!(short.context_length(), 5);
    let ids5 = short.encode(&long).expect("encode");
    assert_eq!(ids5, [&ids[..4], &[EOT_TOKEN]].concat());
    let exact = short.encode("a b c").expect("encode");
    assert_eq!(exact[4], EOT_TOKEN, "3 words + sot + eot fill 5 exactly");
}

#[test]
fn typed_special_token_strings_stay_plain_text() {
    let f = fixtures();
    let specials: Vec<StockSpecial> = fixture("stock_open_clip_specials.json");
    assert!(!specials.is_empty());
    let tok = ClipTokenizer::new().expect("tokenizer");
    for s in &specials {
        assert_eq!(f.corpus[s.index], s.text);
        let ids = tok.encode(&s.text).expect("encode");
        assert_eq!(ids, f.ids[s.index], "{:?}", s.text);
        // Stock open_clip turns the typed strings into extra special ids; dermlip deliberately does not.
        let specials_in = |v: &[u32]| v.iter().filter(|&&id| id == SOT_TOKEN || id == EOT_TOKEN).count();
        assert!(specials_in(&s.stock_open_clip_ids) > 2, "{:?}: stock open_clip should inject specials", s.text);
        assert_eq!(specials_in(&ids), 2, "{:?}: only the real sot and eot", s.text);
    }
    for text in ["<start_of_text>", "<end_of_text>", "<|endoftext|>", "a <START_OF_TEXT> b <end_of_text>"] {
        let ids = tok.encode(text).expect("encode");
        let eot = ids.iter().position(|&id| id == EOT_TOKEN).expect("eot");
        assert!(eot > 1, "{text:?} must produce ordinary tokens");
        assert!(ids[1..eot].iter().all(|&id| id < SOT_TOKEN), "{text:?} injected a special token");
    }
}

#[test]
fn batch_equals_single_encodes() {
    let f = fixtures();
    let tok = ClipTokenizer::new().expect("tokenizer");
    let texts: Vec<&str> = f.corpus.iter().take(64).map(String::as_str).collect();
    let batch = tok.encode_batch(&texts).expect("batch");
    for (text, ids) in texts.iter().zip(&batch) {
        assert_eq!(ids, &tok.encode(text).expect("encode"));
    }
    assert!(tok.encode_batch(&[]).expect("empty batch").is_empty());
}

#[test]
fn context_length_is_validated() {
    for n in [0, 1, usize::MAX] {
        let err = ClipTokenizer::new().expect("tokenizer").with_context_length(n).expect_err("must fail");
        assert!(matches!(err, TokenizerError::ContextLength(m) if m == n));
        assert!(err.to_string().contains(&n.to_string()), "{err}");
    }
    let tok = ClipTokenizer::new().expect("tokenizer").with_context_length(2).expect("2 is allowed");
    assert_eq!(tok.encode("melanoma").expect("encode"), vec![SOT_TOKEN, EOT_TOKEN]);
}
