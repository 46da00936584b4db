//! Hostile label and template text: over-long texts are refused before cleaning and BPE, `{c}`
//! repeated cannot multiply a prompt without bound, and duplicate detection is linear.

use dermlip::input::tokenizer::ClipTokenizer;
use dermlip::knowledge::labels::{LabelError, LabelSet};
use dermlip::knowledge::zero_shot::{validate_labels, validate_templates};
use dermlip::limits::{MAX_TEMPLATE_PLACEHOLDERS, MAX_TEXT_BYTES};

#[test]
fn tokenizer_refuses_text_over_the_cap_before_encoding() {
    let tok = ClipTokenizer::new().unwrap();
    let at_cap = "a ".repeat(MAX_TEXT_BYTES / 2);
    assert_eq!(tok.encode(&at_cap).unwrap().len(), 77);
    let over = format!("{at_cap}b");
    let err = tok.encode(&over).unwrap_err().to_string();
    assert!(err.contains(&MAX_TEXT_BYTES.to_string()) && err.contains(&over.len().to_string()), "{err}");
    // 64 MiB of text is refused at once, not cleaned and encoded whole.
    let huge = "melanoma ".repeat(64 << 20 >> 3);
    let start = std::time::Instant::now();
    assert!(tok.encode(&huge).is_err());
    assert!(start.elapsed().as_millis() < 500, "{:?}", start.elapsed());
}

#[test]
fn long_labels_and_templates_are_refused() {
    let long = "x".repeat(MAX_TEXT_BYTES + 1);
    let err = validate_labels(&["nevus".into(), long.clone()]).unwrap_err().to_string();
    assert!(err.contains("label 2") && err.contains(&MAX_TEXT_BYTES.to_string()), "{err}");
    let err = validate_templates(&[format!("{long} {{c}}")]).unwrap_err().to_string();
    assert!(err.contains("template 1"), "{err}");
    let many = "{c}".repeat(MAX_TEMPLATE_PLACEHOLDERS + 1);
    let err = validate_templates(&[many]).unwrap_err().to_string();
    assert!(err.contains("placeholders"), "{err}");
    assert!(validate_templates(&["a photo of {c}, {c}".into()]).is_ok());
    match LabelSet::from_json_str(&serde_json::to_string(&vec!["nevus".to_string(), long]).unwrap()) {
        Err(LabelError::TooLong { bytes, max, .. }) => assert_eq!((bytes, max), (MAX_TEXT_BYTES + 1, MAX_TEXT_BYTES)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_detection_is_linear_with_the_same_message() {
    let mut labels: Vec<String> = (0..200_000).map(|i| format!("class {i}")).collect();
    let start = std::time::Instant::now();
    validate_labels(&labels).unwrap();
    assert!(start.elapsed().as_secs_f32() < 2.0, "{:?}", start.elapsed());
    labels.push(" class 17 ".into());
    let err = validate_labels(&labels).unwrap_err().to_string();
    assert_eq!(err, "label \"class 17\" is given twice");
}
