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
        let item = Item {
            id: format!("img-{i}"),
            kind: ItemKind::Image,
            source: im.file.clone(),
            label: None,
            caption: None,
            thumbnail: None,
        };
        store.push(item, &im.embedding).unwrap();
    }
    for (i, t) in r.texts.iter().enumerate() {
        let item = Item {
            id: format!("txt-{i}"),
            kind: ItemKind::Text,
            source: t.text.clone(),
            label: None,
            caption: None,
            thumbnail: None,
        };
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
    let item = |id: &str| Item {
        id: id.into(),
        kind: ItemKind::Text,
        source: "x".into(),
        label: None,
        caption: None,
        thumbnail: None,
    };
    assert!(s.push(item("a"), &[1.0, 0.0]).unwrap_err().to_string().contains("3-d"));
    assert!(s.push(item("a"), &[f32::NAN, 0.0, 1.0]).is_err());
    s.push(item("a"), &[1.0, 0.0, 0.0]).unwrap();
    assert!(s.push(item("a"), &[0.0, 1.0, 0.0]).unwrap_err().to_string().contains("already"));
    assert!(s.search(&[1.0], 1, None).is_err());
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dermlip_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dermlip")).args(args).current_dir(repo()).output().unwrap()
}

fn example_images() -> Vec<String> {
    let tsv = std::fs::read_to_string(repo().join("www/galleries/example/captions.tsv")).unwrap();
    tsv.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect()
}

/// The site's example gallery (www/galleries/example/) is what `dermlip index` writes today (up to
/// the last bits of its vectors, which depend on the CPU), and its vectors are open_clip's
/// embeddings of those photos.
#[test]
fn the_example_gallery_is_current_and_holds_open_clips_embeddings() {
    let dir = std::env::temp_dir().join(format!("dermlip-example-gallery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("gallery.dlemb");
    let thumbs = dir.join("thumbnails");
    let images = example_images();
    let mut args: Vec<&str> = vec!["index"];
    args.extend(images.iter().map(String::as_str));
    let (out_s, thumbs_s) = (out.to_str().unwrap(), thumbs.to_str().unwrap());
    args.extend([
        "--model",
        "tests/fixtures/models/tiny-gelu",
        "--image-captions",
        "www/galleries/example/captions.tsv",
        "--thumbnails",
        thumbs_s,
        "--out",
        out_s,
    ]);
    let run = dermlip_cli(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let regenerate = "regenerate it with the command in www/galleries/example/README.md";
    let committed = repo().join("www/galleries/example");
    let (ours, theirs) = (std::fs::read(&out).unwrap(), std::fs::read(committed.join("gallery.dlemb")).unwrap());
    if ours != theirs {
        // The vectors and the probe are model outputs: their last bits depend on the CPU.
        let (a, b) = (EmbeddingStore::from_bytes(&ours).unwrap(), EmbeddingStore::from_bytes(&theirs).unwrap());
        assert_eq!((&a.model, a.dim, a.items()), (&b.model, b.dim, b.items()), "gallery.dlemb: {regenerate}");
        assert_eq!(a.probe().is_some(), b.probe().is_some(), "gallery.dlemb: the model check; {regenerate}");
        let pairs = (0..a.len()).map(|i| (a.vector(i), b.vector(i))).chain(a.probe().zip(b.probe()));
        for (x, y) in pairs {
            let d = max_abs_diff(x, y) as f64;
            assert!(d <= common::FLOAT_NOISE, "gallery.dlemb differs from a fresh index by {d}; {regenerate}");
        }
    }
    for i in 1..=images.len() {
        let name = format!("{i}.jpg");
        assert!(
            std::fs::read(thumbs.join(&name)).unwrap()
                == std::fs::read(committed.join("thumbnails").join(&name)).unwrap(),
            "thumbnails/{name}: {regenerate}"
        );
    }
    assert_eq!(std::fs::read_dir(committed.join("thumbnails")).unwrap().count(), images.len());

    let store = EmbeddingStore::from_bytes(&std::fs::read(committed.join("gallery.dlemb")).unwrap()).unwrap();
    assert_eq!(store.model, format!("tiny-gelu ({})", store.dim));
    let r = reference("tiny-gelu");
    for (i, item) in store.items().iter().enumerate() {
        assert_eq!(item.thumbnail.as_deref(), Some(format!("thumbnails/{}.jpg", i + 1).as_str()));
        assert!(item.caption.as_deref().is_some_and(|c| c.starts_with("Test ")), "{:?}", item.caption);
        let file = item.source.trim_start_matches("tests/fixtures/");
        let want =
            &r.images.iter().find(|x| x.file == file).unwrap_or_else(|| panic!("{file} in the reference")).embedding;
        assert!(max_abs_diff(store.vector(i), &l2_normalize(want)) < 1e-4, "{file}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A gallery records its model's embedding of the probe picture; a reader's model must match it.
#[test]
fn a_gallery_knows_which_model_made_it() {
    use dermlip::knowledge::retrieval::{probe_rgba, PROBE_MIN_COSINE, PROBE_SIDE};
    assert_eq!(probe_rgba().len(), (PROBE_SIDE * PROBE_SIDE * 4) as usize);
    let store = EmbeddingStore::from_bytes(&std::fs::read(repo().join("www/galleries/example/gallery.dlemb")).unwrap())
        .unwrap();
    assert!(store.has_probe());
    let probe = |name: &str| {
        let lip = dermlip::DermLip::load(&model_dir(name), burn::tensor::Device::flex()).unwrap();
        dermlip::pipeline::rows(lip.encode_pixels(&[lip.probe_pixels().unwrap()])).unwrap().remove(0)
    };
    let same = store.check_probe(&probe("tiny-gelu")).unwrap();
    assert!(same > 0.99999, "{same}");
    let other = probe("tiny-quickgelu");
    let err = store.check_probe(&other).unwrap_err().to_string();
    assert!(err.contains("made by another model (tiny-gelu"), "{err}");
    assert!(same > PROBE_MIN_COSINE);

    // Without a probe (files written before it existed) there is no check to pass.
    let mut bare = EmbeddingStore::new("old", store.dim);
    bare.push(
        Item {
            id: "a".into(),
            kind: ItemKind::Image,
            source: "a.jpg".into(),
            label: None,
            caption: None,
            thumbnail: None,
        },
        store.vector(0),
    )
    .unwrap();
    let err =
        EmbeddingStore::from_bytes(&bare.to_bytes(Precision::F32)).unwrap().check_probe(store.vector(0)).unwrap_err();
    assert!(err.to_string().contains("has no model check"), "{err}");
    // A probe of the wrong length in the header is a damaged file.
    let mut bytes = store.to_bytes(Precision::F32);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find("\"probe\":[").unwrap() + "\"probe\":[".len();
    let comma = at + text[at..].find(',').unwrap();
    bytes.splice(at..=comma, std::iter::empty());
    let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) - (comma + 1 - at) as u32;
    bytes[12..16].copy_from_slice(&len.to_le_bytes());
    let err = EmbeddingStore::from_bytes(&bytes).unwrap_err().to_string();
    assert!(err.contains("probe"), "{err}");
}

/// `dermlip search` with another model than the gallery's, and `dermlip index` with bad captions
/// or a thumbnail folder away from the collection: one clear line each, no file written.
#[test]
fn gallery_commands_refuse_mismatches() {
    let run = dermlip_cli(&[
        "search",
        "www/galleries/example/gallery.dlemb",
        "--image",
        "tests/fixtures/images/coffee_600x400_progressive.jpg",
        "--model",
        "tests/fixtures/models/tiny-quickgelu",
    ]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("made by another model"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let dir = std::env::temp_dir().join(format!("dermlip-gallery-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let captions = dir.join("captions.tsv");
    let out = dir.join("g.dlemb");
    let img = "tests/fixtures/images/coffee_600x400_progressive.jpg";
    for (tsv, want) in [
        ("tests/fixtures/images/chelsea_451x300_q95_444.jpg\tA cat.\n", "is not one of the images to index"),
        ("no tab here\n", "expected IMAGE<TAB>caption"),
        (&format!("{img}\tOne.\n{img}\tTwo.\n") as &str, "has a caption already"),
        (&format!("{img}\t \n") as &str, "a caption has 1 to 500 characters"),
    ] {
        std::fs::write(&captions, tsv).unwrap();
        let run = dermlip_cli(&[
            "index",
            img,
            "--model",
            "tests/fixtures/models/tiny-gelu",
            "--image-captions",
            captions.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(want), "{tsv:?}: {stderr}");
        assert!(!out.exists());
    }
    let elsewhere = std::env::temp_dir().join(format!("dermlip-thumbs-elsewhere-{}", std::process::id()));
    let run = dermlip_cli(&[
        "index",
        img,
        "--model",
        "tests/fixtures/models/tiny-gelu",
        "--thumbnails",
        elsewhere.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("must be in the folder of --out"), "{stderr}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&elsewhere).ok();
}
