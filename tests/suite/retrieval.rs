//! Retrieval over open_clip's reference embeddings: rankings equal a direct cosine computation,
//! and the file format round-trips and refuses damaged files.

use crate::common;

use common::*;
use dermlip::knowledge::retrieval::{EmbeddingStore, Item, ItemKind, Precision};
use dermlip::knowledge::zero_shot::l2_normalize;

fn cos(a: &[f32], b: &[f32]) -> f32 {
    l2_normalize(a).iter().zip(l2_normalize(b)).map(|(x, y)| x * y).sum()
}

fn reference_store() -> (EmbeddingStore, common::Reference) {
    let r = reference("tiny-gelu");
    let mut store = EmbeddingStore::new("tiny-gelu", r.embed_dim);
    for (i, im) in r.images.iter().enumerate() {
        let item = Item { id: format!("img-{i}"), kind: ItemKind::Image, source: im.file.clone(), label: None };
        store.push(item, &im.embedding).unwrap();
    }
    for (i, t) in r.texts.iter().enumerate() {
        let item = Item { id: format!("txt-{i}"), kind: ItemKind::Text, source: t.text.clone(), label: None };
        store.push(item, &t.embedding).unwrap();
    }
    (store, r)
}

#[test]
fn text_to_image_ranking_is_cosine_order() {
    let (store, r) = reference_store();
    for t in &r.texts {
        let hits = store.search(&t.embedding, 5, Some(ItemKind::Image)).unwrap();
        let mut want: Vec<(usize, f32)> =
            r.images.iter().map(|im| cos(&t.embedding, &im.embedding)).enumerate().collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (h, (i, s)) in hits.iter().zip(&want) {
            assert_eq!(h.id, format!("img-{i}"));
            assert!((h.score - s).abs() < 1e-5);
        }
    }
}

#[test]
fn roundtrip_f32_exact_f16_close() {
    let (store, r) = reference_store();
    let back = EmbeddingStore::from_bytes(&store.to_bytes(Precision::F32)).unwrap();
    assert_eq!(back, store);
    let half = EmbeddingStore::from_bytes(&store.to_bytes(Precision::F16)).unwrap();
    assert_eq!(half.items(), store.items());
    let q = &r.texts[0].embedding;
    let a = store.search(q, 3, None).unwrap();
    let b = half.search(q, 3, None).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x.score - y.score).abs() < 2e-3, "{} vs {}", x.score, y.score);
    }
}

#[test]
fn damaged_files_and_bad_vectors_are_refused() {
    let (store, _) = reference_store();
    let bytes = store.to_bytes(Precision::F16);
    for cut in [0, 8, 15, 40, bytes.len() - 1] {
        assert!(EmbeddingStore::from_bytes(&bytes[..cut]).is_err(), "cut at {cut} accepted");
    }
    let mut wrong = bytes.clone();
    wrong[0] = b'X';
    assert!(EmbeddingStore::from_bytes(&wrong).unwrap_err().to_string().contains("DERMLIPE"));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(EmbeddingStore::from_bytes(&longer).is_err());

    let mut s = EmbeddingStore::new("m", 3);
    let item = |id: &str| Item { id: id.into(), kind: ItemKind::Text, source: "x".into(), label: None };
    assert!(s.push(item("a"), &[1.0, 0.0]).unwrap_err().to_string().contains("3-d"));
    assert!(s.push(item("a"), &[f32::NAN, 0.0, 1.0]).is_err());
    s.push(item("a"), &[1.0, 0.0, 0.0]).unwrap();
    assert!(s.push(item("a"), &[0.0, 1.0, 0.0]).unwrap_err().to_string().contains("already"));
    assert!(s.search(&[1.0], 1, None).is_err());
}
