//! Built-in label sets, templates, concept terms and the ontology. The expected values are the
//! source lists (the copies in data/, and hard-coded counts and end names from the upstream
//! repositories), never this crate's own output.

use dermlip::knowledge::labels::{self, LabelError, LabelSet};
use dermlip::knowledge::ontology::{NodeProb, Ontology, OntologyError, UnplacedLabels, ROOT, UNPLACED};
use serde_json::Value;

const ZERO_SHOT: &str = include_str!("../../data/zero_shot_classnames.json");
const MAKE: &str = include_str!("../../data/make_snu134_sd128_classnames.json");
const DERMFM_ZERO: &str = include_str!("../../data/dermfm_zero_classnames.json");
const TEMPLATES: &str = include_str!("../../data/prompt_templates.json");
const CONCEPT_TERMS: &str = include_str!("../../data/ConceptTerms.json");

fn source_list(json: &str, key: &str) -> Vec<String> {
    let doc: Value = serde_json::from_str(json).unwrap();
    doc[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// (id, data file, list name, count, first, last) as in the upstream repositories.
const EXPECTED: [(&str, &str, &str, usize, &str, &str); 7] = [
    ("ham7", ZERO_SHOT, "HAM_CLASSNAMES", 7, "actinic keratosis", "vascular"),
    ("pad6", ZERO_SHOT, "PAD_CLASSNAMES", 6, "nevus", "melanoma"),
    ("daffodil5", ZERO_SHOT, "DAFFODIL_5_CLASSNAMES", 5, "vitiligo", "nail psoriasis"),
    ("f17k", ZERO_SHOT, "F17K_DISEASE_113_CLASSES", 114, "dermatofibroma", "lichen simplex"),
    ("snu134", MAKE, "SNU_134_CLASSNAMES", 134, "epidermal cyst", "telangiectasia"),
    ("sd128", MAKE, "SD_128_CLASSNAMES", 128, "acne keloidalis nuchae", "xerosis"),
    ("derm1m", DERMFM_ZERO, "DERM1M_CLASSNAMES", 407, "acne", "allergic reaction"),
];

#[test]
fn builtin_sets_equal_the_source_lists_in_order() {
    assert_eq!(LabelSet::all().len(), 7);
    for (i, (id, json, key, count, first, last)) in EXPECTED.iter().enumerate() {
        let set = LabelSet::builtin(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(LabelSet::all()[i].id(), *id);
        assert_eq!(set.len(), *count, "{id}");
        assert_eq!(set.classes(), source_list(json, key).as_slice(), "{id}: order or names differ");
        assert_eq!(set.classes().first().unwrap(), first, "{id}");
        assert_eq!(set.classes().last().unwrap(), last, "{id}");
        assert!(set.source().contains(key) && set.source().contains(" @ "), "{}", set.source());
        assert!(set.licence().contains("not covered"), "{}", set.licence());
        assert!(!set.name().is_empty() && !set.notes().is_empty());
    }
    assert!(LabelSet::builtin("f17k").unwrap().notes().contains("114"));
    assert_eq!(LabelSet::builtin("ham7").unwrap().index_of("Vascular"), Some(6));
    assert_eq!(LabelSet::builtin("daffodil5").unwrap().classes()[2], "SJS/TEN");
}

#[test]
fn every_builtin_set_has_a_menu_title_and_custom_sets_none() {
    let titles: Vec<_> = LabelSet::all().iter().map(|s| s.title()).collect();
    assert!(titles.iter().all(|t| t.is_some_and(|t| !t.trim().is_empty())), "{titles:?}");
    assert_eq!(LabelSet::builtin("ham7").unwrap().title(), Some("HAM-7 (dermoscopy: 7 lesion types)"));
    assert_eq!(LabelSet::new("mine", vec!["a".into(), "b".into()]).unwrap().title(), None);
}

#[test]
fn builtin_ids_are_forgiving() {
    for (alias, id) in [
        ("HAM-7", "ham7"),
        ("ham10000", "ham7"),
        ("PAD-UFES-20", "pad6"),
        ("Daffodil", "daffodil5"),
        ("Fitzpatrick17k", "f17k"),
        ("F17K-113", "f17k"),
        ("SNU_134", "snu134"),
        ("SD-128", "sd128"),
        ("DERM1M", "derm1m"),
    ] {
        assert_eq!(LabelSet::builtin(alias).map(LabelSet::id), Some(id), "{alias}");
    }
    assert!(LabelSet::builtin("isic2019").is_none());
    assert!(LabelSet::builtin("").is_none());
}

/// The data/ files are verbatim copies; checked when the shared originals are on this machine.
#[test]
fn data_copies_are_verbatim_when_originals_exist() {
    let dir = std::path::Path::new("/work/shared/data/derm1m");
    if !dir.exists() {
        return;
    }
    for (name, copy) in [
        ("zero_shot_classnames.json", ZERO_SHOT),
        ("make_snu134_sd128_classnames.json", MAKE),
        ("dermfm_zero_classnames.json", DERMFM_ZERO),
        ("prompt_templates.json", TEMPLATES),
        ("ConceptTerms.json", CONCEPT_TERMS),
    ] {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), copy, "{name}");
    }
}

#[test]
fn templates_and_temperature_match_prompt_templates_json() {
    let doc: Value = serde_json::from_str(TEMPLATES).unwrap();
    let strings = |k: &str| -> Vec<String> {
        doc[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(labels::ZERO_SHOT_TEMPLATES.to_vec(), strings("zero_shot_templates_OPENAI_SKIN_TEMPLATES"));
    assert_eq!(dermlip::knowledge::concepts::CONCEPT_TEMPLATES.to_vec(), strings("concept_prompt_template_list"));
    let refs: Vec<String> = doc["concept_prompt_ref_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let r = r.as_array().unwrap();
            assert_eq!(r.len(), 1);
            r[0].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(dermlip::knowledge::concepts::CONCEPT_REFERENCE_PROMPTS.to_vec(), refs);

    let temp = doc["concept_presence_temperature"].as_str().unwrap();
    let ln_scale: f64 = temp.strip_prefix("1/exp(").unwrap().split(')').next().unwrap().parse().unwrap();
    assert_eq!(ln_scale, 4.5944);
    let expected = 1.0 / ln_scale.exp(); // 0.0101083…
    assert!((f64::from(dermlip::knowledge::concepts::concept_temperature()) - expected).abs() < 1e-9);
    assert!((expected - 0.0101083).abs() < 1e-7);
}

#[test]
fn concept_terms_in_file_order() {
    let concepts = dermlip::knowledge::concepts::concepts();
    assert_eq!(concepts.len(), 64);
    assert_eq!(concepts[0].name, "abscess");
    assert_eq!(concepts[0].terms, ["abscess", "swollen", "pus-filled lump"]);
    assert_eq!(concepts[63].name, "dermoscope border");
    let doc: Value = serde_json::from_str(CONCEPT_TERMS).unwrap();
    let map = doc.as_object().unwrap();
    assert_eq!(map.len(), 64);
    let mut last_pos = 0;
    for c in concepts {
        let terms: Vec<String> =
            map[&c.name].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(c.terms, terms, "{}", c.name);
        let pos = CONCEPT_TERMS.find(&format!("\"{}\": [", c.name)).unwrap();
        assert!(pos > last_pos || last_pos == 0, "{} out of file order", c.name);
        last_pos = pos;
    }
}

// ---------------------------------------------------------------- custom label sets

#[test]
fn custom_json_array_and_object() {
    let set = LabelSet::from_json(br#"["nevus", " melanoma ", "acute dermatitis, nos"]"#).unwrap();
    assert_eq!(set.classes(), ["nevus", "melanoma", "acute dermatitis, nos"]);
    assert_eq!((set.id(), set.name()), ("custom", "custom"));

    let set = LabelSet::from_json_str(
        "\u{feff}{\"name\": \"clinic\", \"classes\": [\"a\", \"b\"], \"source\": \"ward 3\", \"license\": \"CC0\"}",
    )
    .unwrap();
    assert_eq!((set.name(), set.source(), set.licence()), ("clinic", "ward 3", "CC0"));
    assert_eq!(set.classes(), ["a", "b"]);
    assert_eq!(LabelSet::new("x", vec!["p".into(), "q".into()]).unwrap().len(), 2);
}

#[test]
fn custom_csv_one_column_bom_crlf_quotes() {
    let csv = "\u{feff}nevus\r\n\"acute dermatitis, nos\"\r\n\"say \"\"hi\"\"\"\r\n\r\nmelanoma";
    let set = LabelSet::from_csv(csv.as_bytes()).unwrap();
    assert_eq!(set.classes(), ["nevus", "acute dermatitis, nos", "say \"hi\"", "melanoma"]);
}

#[test]
fn custom_csv_with_header() {
    let set = LabelSet::from_csv(b"id,Label,count\n0,nevus,3\n1,\"bcc, nodular\",4\n").unwrap();
    assert_eq!(set.classes(), ["nevus", "bcc, nodular"]);
    // `label` wins over `name`, whatever the column order.
    let set = LabelSet::from_csv(b"name,label\nx,nevus\ny,melanoma\n").unwrap();
    assert_eq!(set.classes(), ["nevus", "melanoma"]);
    let set = LabelSet::from_csv(b"class\nnevus\nmelanoma\n").unwrap();
    assert_eq!(set.classes(), ["nevus", "melanoma"]);
}

#[test]
fn custom_label_sets_reject_bad_input() {
    let err = |r: Result<LabelSet, LabelError>| r.unwrap_err();
    assert_eq!(err(LabelSet::from_json(b"[]")), LabelError::Empty);
    assert_eq!(err(LabelSet::from_csv(b"")), LabelError::Empty);
    assert_eq!(err(LabelSet::from_csv(b"\n\r\n")), LabelError::Empty);
    assert_eq!(err(LabelSet::from_csv(b"label\n")), LabelError::Empty);

    let e = err(LabelSet::from_json(br#"["Nevus", "melanoma", " nevus "]"#));
    assert_eq!(
        e.to_string(),
        "duplicate class \"nevus\" at entry 3: same as entry 1 (names are compared trimmed and ignoring case)"
    );
    let e = err(LabelSet::from_csv(b"nevus\nmelanoma\nMELANOMA\n"));
    assert!(matches!(&e, LabelError::Duplicate { at, first_at, .. } if at == "line 3" && first_at == "line 2"), "{e}");

    assert_eq!(err(LabelSet::from_json(br#"["a", "  "]"#)), LabelError::Blank { at: "entry 2".into() });
    assert_eq!(err(LabelSet::from_csv(b"a\n   \nb\n")), LabelError::Blank { at: "line 2".into() });
    assert_eq!(err(LabelSet::from_csv(b"a\n\"\"\n")), LabelError::Blank { at: "line 2".into() });

    let bad_utf8 = b"nevus\nmel\xffanoma\n";
    assert_eq!(err(LabelSet::from_csv(bad_utf8)), LabelError::NotUtf8 { offset: 9 });
    assert_eq!(err(LabelSet::from_json(b"[\"\xc3\x28\"]")), LabelError::NotUtf8 { offset: 2 });

    assert!(err(LabelSet::from_json(b"[\"a\", 3]")).to_string().contains("entry 2 is a number"));
    assert!(err(LabelSet::from_json(b"{\"name\": \"x\"}")).to_string().contains("no \"classes\""));
    assert!(err(LabelSet::from_json(b"\"nevus\"")).to_string().contains("a string"));
    assert!(matches!(err(LabelSet::from_json(b"[\"a\",")), LabelError::Json(_)));

    let e = err(LabelSet::from_csv(b"nevus\nacute dermatitis, nos\n"));
    assert_eq!(
        e,
        LabelError::Csv { line: 2, problem: "2 fields where 1 expected (quote names that contain commas)".into() }
    );
    let e = err(LabelSet::from_csv(b"id,count\n1,2\n"));
    assert!(matches!(&e, LabelError::Csv { line: 1, problem } if problem.contains("no header column")), "{e}");
    let e = err(LabelSet::from_csv(b"a\n\"b\nc\n"));
    assert_eq!(e, LabelError::Csv { line: 2, problem: "unterminated quoted field".into() });
    let e = err(LabelSet::from_csv(b"\"a\"b\n"));
    assert!(matches!(e, LabelError::Csv { line: 1, .. }), "{e}");
}

#[cfg(not(target_family = "wasm"))]
#[test]
fn custom_label_set_from_file() {
    let dir = std::env::temp_dir().join(format!("dermlip-knowledge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("my_clinic.csv");
    std::fs::write(&path, "label\nnevus\nmelanoma\n").unwrap();
    let set = LabelSet::from_path(&path).unwrap();
    assert_eq!((set.name(), set.len()), ("my_clinic", 2));
    let e = LabelSet::from_path(dir.join("missing.json")).unwrap_err();
    assert!(e.to_string().contains("missing.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- ontology

#[test]
fn ontology_places_every_builtin_class() {
    let o = Ontology::builtin();
    assert!(o.len() > 400, "builtin ontology did not load: {} nodes", o.len());
    let mut unplaced = Vec::new();
    for set in LabelSet::all() {
        for class in set.classes() {
            match o.node(class) {
                Some(node) => {
                    let path = o.path(class);
                    assert_eq!(path.last().copied(), Some(node.name()), "{class}");
                    assert_eq!(path.len(), node.depth(), "{class}");
                }
                None => unplaced.push(format!("{}: {class}", set.id())),
            }
        }
    }
    assert!(unplaced.is_empty(), "classes without a node: {unplaced:?}");
    for set in LabelSet::all() {
        let probs = vec![1.0 / set.len() as f32; set.len()];
        let agg = o.aggregate(set.classes(), &probs).unwrap();
        assert_eq!(agg[0].n_classes, set.len(), "{}", set.id());
    }
}

#[test]
fn ontology_shape() {
    let o = Ontology::builtin();
    let top = o.top_level();
    for name in [
        "inflammatory",
        "proliferations",
        "exogenous",
        "hereditary",
        "hair diseases",
        "nail diseases",
        "reaction patterns",
        "pigmentary disorders",
    ] {
        assert!(top.contains(&name), "{name} missing from {top:?}");
    }
    assert_eq!(o.children("infectious"), ["viral", "bacterial", "fungal", "parasitic"]);
    assert_eq!(o.children("proliferations")[..3], ["benign", "malignant", "cysts"]);
    assert!(o.max_depth() <= 5, "depth {}", o.max_depth());
    assert_eq!(o.path("melanoma"), ["proliferations", "malignant", "malignant melanocytic", "melanoma"]);
    assert_eq!(o.path("nummular eczema"), ["inflammatory", "non-infectious", "eczema", "nummular eczema"]);
    assert_eq!(o.path("Vascular"), ["proliferations", "benign", "benign vascular"]);
    assert_eq!(o.path("SJS/TEN"), ["exogenous", "drug reactions", "drug eruption", "sjs/ten"]);
    assert_eq!(o.path("actinic keratosis")[..2], ["proliferations", "malignant"]);
    assert_eq!(o.path("sweet's syndrome"), o.path("sweet’s syndrome"));
    assert_eq!(o.canonical("Bowen Disease"), Some("bowen's disease"));
    assert!(!o.node("nevus").unwrap().is_leaf());
    assert!(!o.node("benign keratosis").unwrap().is_leaf());
    assert!(o.leaves_under("nevus").contains(&"blue nevus"));
    assert!(o.leaves().contains(&"blue nevus") && !o.leaves().contains(&"nevus"));
    assert!(o.path("not a disease").is_empty() && o.node("not a disease").is_none());
    assert_eq!(o.node(ROOT).unwrap().depth(), 0);
    assert_eq!(Ontology::from_json(&o.to_json()).unwrap(), *o);
}

fn prob(agg: &[NodeProb], name: &str) -> f32 {
    agg.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("{name} not in output")).prob
}

#[test]
fn aggregate_sums_over_the_tree() {
    let o = Ontology::builtin();
    let ham = LabelSet::builtin("ham7").unwrap();
    // akiec, bcc, bkl, df, mel, nv, vasc
    let p = [0.05, 0.10, 0.15, 0.02, 0.30, 0.35, 0.03];
    let agg = o.aggregate(ham.classes(), &p).unwrap();
    assert_eq!(agg[0].name, ROOT);
    assert!((agg[0].prob - 1.0).abs() < 1e-6);
    assert_eq!(agg.len(), o.len() + 1);
    assert!((prob(&agg, "proliferations") - 1.0).abs() < 1e-6);
    assert!((prob(&agg, "malignant") - 0.45).abs() < 1e-6);
    assert!((prob(&agg, "benign") - 0.55).abs() < 1e-6);
    assert!((prob(&agg, "malignant non-melanocytic") - 0.15).abs() < 1e-6);
    assert!((prob(&agg, "benign melanocytic") - 0.35).abs() < 1e-6);
    assert_eq!(prob(&agg, "inflammatory"), 0.0);

    // Every node of a uniform full distribution over 407 classes is n_classes / 407.
    let d = LabelSet::builtin("derm1m").unwrap();
    let agg = o.aggregate(d.classes(), &vec![1.0 / 407.0; 407]).unwrap();
    assert!((agg[0].prob - 1.0).abs() < 1e-5);
    for n in &agg {
        assert!((n.prob - n.n_classes as f32 / 407.0).abs() < 1e-5, "{}", n.name);
    }

    // A class that is an inner node counts for itself and its ancestors; aliases add up.
    let labels = ["nevus", "blue nevus", "bowen disease", "bowen's disease"];
    let agg = o.aggregate(&labels, &[0.3, 0.2, 0.1, 0.15]).unwrap();
    assert!((prob(&agg, "nevus") - 0.5).abs() < 1e-6);
    assert!((prob(&agg, "blue nevus") - 0.2).abs() < 1e-6);
    assert!((prob(&agg, "benign melanocytic") - 0.5).abs() < 1e-6);
    assert!((prob(&agg, "bowen's disease") - 0.25).abs() < 1e-6);
    assert!((prob(&agg, "squamous cell carcinoma") - 0.25).abs() < 1e-6);
}

#[test]
fn aggregate_errors_and_unplaced_bucket() {
    let o = Ontology::builtin();
    let labels = ["melanoma", "foo", "nevus", "bar"];
    let p = [0.4, 0.1, 0.3, 0.2];
    let e = o.aggregate(&labels, &p).unwrap_err();
    assert_eq!(e, OntologyError::Unplaced(vec!["foo".into(), "bar".into()]));
    assert_eq!(e.to_string(), "labels not in the ontology: \"foo\", \"bar\"");
    let agg = o.aggregate_with(&labels, &p, UnplacedLabels::Bucket).unwrap();
    let bucket = agg.last().unwrap();
    assert_eq!((bucket.name.as_str(), bucket.n_classes, bucket.parent.as_deref()), (UNPLACED, 2, Some(ROOT)));
    assert!((bucket.prob - 0.3).abs() < 1e-6 && (agg[0].prob - 1.0).abs() < 1e-6);

    assert_eq!(
        o.aggregate(&["nevus"], &[0.5, 0.5]).unwrap_err(),
        OntologyError::LengthMismatch { labels: 1, probs: 2 }
    );
    assert!(matches!(o.aggregate(&["nevus"], &[f32::NAN]), Err(OntologyError::BadProbability { .. })));
    assert!(matches!(o.aggregate(&["nevus"], &[-0.1]), Err(OntologyError::BadProbability { .. })));
    assert_eq!(
        o.aggregate(&["nevus", "Nevus "], &[0.5, 0.5]).unwrap_err(),
        OntologyError::DuplicateLabel { label: "Nevus ".into(), first: 1, second: 2 }
    );
}

#[test]
fn most_specific_example_chain() {
    let o = Ontology::builtin();
    let labels = ["melanoma", "lentigo maligna", "basal cell carcinoma", "nevus", "eczema"];
    let agg = o.aggregate(&labels, &[0.62, 0.19, 0.04, 0.08, 0.07]).unwrap();
    let chain = o.most_specific(&agg, 0.5);
    let got: Vec<(&str, f32)> = chain.iter().map(|n| (n.name.as_str(), n.prob)).collect();
    let want = [("proliferations", 0.93), ("malignant", 0.85), ("malignant melanocytic", 0.81), ("melanoma", 0.62)];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((name, p), (wname, wp)) in got.iter().zip(want) {
        assert_eq!(*name, wname);
        assert!((p - wp).abs() < 1e-6, "{name} {p}");
    }
    // Serde round trip of the result.
    let json = serde_json::to_string(&chain).unwrap();
    assert_eq!(serde_json::from_str::<Vec<NodeProb>>(&json).unwrap(), chain);

    // Exact tie between siblings: the one first in tree order (benign before malignant).
    let agg = o.aggregate(&["melanoma", "nevus"], &[0.5, 0.5]).unwrap();
    let names: Vec<String> = o.most_specific(&agg, 0.4).into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["proliferations", "benign", "benign melanocytic", "nevus"]);
    assert!(o.most_specific(&agg, 1.5).is_empty());
}

/// The `ontology_final` column of MAKE's assets/MAKE_training_example.csv (10 rows, verbatim).
const MAKE_EXAMPLE_PATHS: [&str; 10] = [
    "hereditary, ichthyosis",
    "inflammatory, dermatitis",
    "inflammatory, non-infectious, atopic dermatitis, dermatitis",
    "inflammatory, non-infectious, eczema, eczema, nummular eczema",
    "inflammatory, non-infectious, atopic dermatitis, dermatitis",
    "inflammatory, non-infectious, atopic dermatitis, dermatitis",
    "hereditary, keratosis, keratosis pilaris",
    "hereditary, ichthyosis",
    "inflammatory, non-infectious, atopic dermatitis, dermatitis",
    "inflammatory, dermatitis",
];

#[test]
fn from_paths_builds_the_derm1m_tree() {
    let (o, conflicts) = Ontology::from_paths_with_report(MAKE_EXAMPLE_PATHS).unwrap();
    assert_eq!(o.top_level(), ["hereditary", "inflammatory"]);
    assert_eq!(o.children("hereditary"), ["ichthyosis", "keratosis"]);
    assert_eq!(o.path("keratosis pilaris"), ["hereditary", "keratosis", "keratosis pilaris"]);
    // "eczema, eczema" is one node.
    assert_eq!(o.path("nummular eczema"), ["inflammatory", "non-infectious", "eczema", "nummular eczema"]);
    // "dermatitis" has 4 paths under "atopic dermatitis" and 2 directly under "inflammatory".
    assert_eq!(o.path("dermatitis"), ["inflammatory", "non-infectious", "atopic dermatitis", "dermatitis"]);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].name, "dermatitis");
    assert_eq!((conflicts[0].parent.as_str(), conflicts[0].votes), ("atopic dermatitis", 4));
    assert_eq!(conflicts[0].rejected, [("inflammatory".to_owned(), 2)]);
    assert_eq!(o.len(), 10);
    assert_eq!(o.leaves(), ["ichthyosis", "keratosis pilaris", "dermatitis", "nummular eczema"]);

    let agg = o.aggregate(&["ichthyosis", "dermatitis", "nummular eczema"], &[0.2, 0.5, 0.3]).unwrap();
    assert!((prob(&agg, "inflammatory") - 0.8).abs() < 1e-6);
    assert!((prob(&agg, "non-infectious") - 0.8).abs() < 1e-6);

    assert_eq!(Ontology::from_paths(["", " , "]).unwrap_err(), OntologyError::NoPaths);
    assert_eq!(Ontology::from_paths(Vec::<String>::new()).unwrap_err(), OntologyError::NoPaths);
    // A path that loops back is cut, not an error.
    let o = Ontology::from_paths(["a, b, a", "b, a"]).unwrap();
    assert_eq!(o.len(), 2);
}

#[test]
fn ontology_json_errors() {
    let e = Ontology::from_json(r#"{"children": [{"name": "a", "children": [{"name": "b"}]}, {"name": "B"}]}"#);
    assert_eq!(
        e.unwrap_err(),
        OntologyError::DuplicateName { name: "B".into(), first: "a".into(), second: ROOT.into() }
    );
    assert!(matches!(Ontology::from_json("{"), Err(OntologyError::Json(_))));
    assert!(matches!(Ontology::from_json(r#"{"children": [{"name": " "}]}"#), Err(OntologyError::BlankName { .. })));
}

// ---------------------------------------------------------------- what the page tells a patient

#[test]
fn the_ontology_says_which_classes_are_cancers_or_pre_cancers() {
    let o = Ontology::builtin();
    // The classes of the two dermoscopy/phone sets, by hand from the Derm1M ontology (and from
    // medicine: actinic keratosis is a pre-cancer, filed under "malignant" there).
    let malignant = ["melanoma", "basal cell carcinoma", "squamous cell carcinoma", "actinic keratosis"];
    let benign = ["nevus", "seborrheic keratosis", "benign keratosis", "dermatofibroma", "vascular"];
    for c in malignant {
        assert!(o.is_under(c, "malignant"), "{c}");
    }
    for c in benign {
        assert!(!o.is_under(c, "malignant"), "{c}");
    }
    assert!(o.is_under("Malignant Melanoma", "skin cancer"), "aliases on both sides");
    assert!(o.is_under("malignant", "malignant"));
    assert!(!o.is_under("no such class", "malignant"));
    assert!(!o.is_under("melanoma", "no such node"));
    assert!(!o.is_under("malignant", "melanoma"), "an ancestor is not under its child");
}

/// `www/plain-language.json`: the page's plain names and one-line descriptions for every class of
/// every built-in set and for every concept tag, in the widget's four languages.
#[test]
fn every_builtin_class_and_concept_has_plain_words_in_four_languages() {
    const PLAIN: &str = include_str!("../../www/plain-language.json");
    const LANGS: [&str; 4] = ["en", "de", "fr", "es"];
    let doc: Value = serde_json::from_str(PLAIN).unwrap();
    assert_eq!(doc["format"], "dermlip-plain-language/1");
    assert!(doc["about"].as_str().is_some_and(|s| s.contains("not reviewed by a clinician")));
    let classes = doc["classes"].as_object().unwrap();
    let bad_chars = |s: &str| s.contains(['<', '>', '`']) || s.trim() != s || s.contains("  ");
    let mut wanted = std::collections::BTreeSet::new();
    for id in LabelSet::builtin_ids() {
        for c in LabelSet::builtin(id).unwrap().classes() {
            wanted.insert(c.trim().to_lowercase());
        }
    }
    let have: std::collections::BTreeSet<String> = classes.keys().cloned().collect();
    assert_eq!(have, wanted, "the keys are the built-in classes, lower-cased, no more, no less");
    let mut problems = Vec::new();
    for (key, entry) in classes {
        for lang in LANGS {
            let (name, desc) = (entry[lang]["name"].as_str(), entry[lang]["description"].as_str());
            let (Some(name), Some(desc)) = (name, desc) else {
                problems.push(format!("{key}/{lang}: missing"));
                continue;
            };
            let (n, d) = (name.chars().count(), desc.chars().count());
            if !(2..=40).contains(&n) || bad_chars(name) || name.chars().next().is_some_and(|c| c.is_lowercase()) {
                problems.push(format!("{key}/{lang}: name {name:?}"));
            }
            if !(30..=160).contains(&d) || bad_chars(desc) || !desc.ends_with(['.', '!', '。']) {
                problems.push(format!("{key}/{lang}: description {desc:?}"));
            }
        }
        assert_eq!(entry.as_object().unwrap().len(), 4, "{key}: exactly the four languages");
    }
    let concepts = doc["concepts"].as_object().unwrap();
    let names: Vec<&str> = dermlip::knowledge::concepts::concepts().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        concepts.keys().map(String::as_str).collect::<std::collections::BTreeSet<_>>(),
        names.iter().copied().collect()
    );
    for (key, entry) in concepts {
        for lang in LANGS {
            match entry[lang].as_str() {
                Some(t) if (2..=32).contains(&t.chars().count()) && !bad_chars(t) && !t.ends_with('.') => {}
                other => problems.push(format!("concept {key}/{lang}: {other:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    // Spot checks a reader can verify: the everyday words, not the ontology's.
    assert_eq!(classes["nevus"]["en"]["name"], "Mole");
    assert!(classes["melanoma"]["en"]["description"].as_str().unwrap().to_lowercase().contains("cancer"));
}

/// The is-this-skin rule on vectors whose cosines are known by hand.
#[test]
fn the_out_of_domain_check_compares_the_best_of_each_side() {
    use dermlip::knowledge::domain::{DomainCheck, MARGIN, OTHER_PROMPTS, SKIN_PROMPTS};
    use dermlip::knowledge::zero_shot::ZeroShotClassifier;
    let e = |i: usize| {
        let mut v = vec![0.0f32; 4];
        v[i] = 1.0;
        v
    };
    // Skin prompts all along e0, other prompts along e1 except "a photo of food" along e2 (scaled:
    // rows are normalised by the check).
    let skin = vec![e(0); SKIN_PROMPTS.len()];
    let mut other = vec![e(1); OTHER_PROMPTS.len()];
    let food = OTHER_PROMPTS.iter().position(|p| *p == "a photo of food").unwrap();
    other[food] = vec![0.0, 0.0, 5.0, 0.0];
    let check = DomainCheck::new(skin, other).unwrap();
    let classes = ZeroShotClassifier::new(vec!["melanoma".into(), "nevus".into()], vec![e(3), e(0)]).unwrap();
    assert_eq!(MARGIN, 0.0, "the documented provisional margin");

    // Image (3, 0, 4, 0)/5: cos 0.6 with skin prompts and nevus, 0.8 with food: not skin.
    let v = check.check(&[3.0, 0.0, 4.0, 0.0], &classes);
    assert!(v.not_skin);
    assert!((v.other_similarity - 0.8).abs() < 1e-6 && (v.skin_similarity - 0.6).abs() < 1e-6);
    assert_eq!(v.closest_other, "a photo of food");
    assert_eq!(v.closest_skin, "nevus", "a class comes before the prompts on a tie");
    // Image (0, 0, 3, 4)/5: melanoma (e3) 0.8 beats food 0.6: skin.
    let v = check.check(&[0.0, 0.0, 3.0, 4.0], &classes);
    assert!(!v.not_skin);
    assert_eq!(v.closest_skin, "melanoma");
    // A tie is skin (the rule is strictly better by more than the margin).
    let v = check.check(&[0.0, 0.0, 1.0, 1.0], &classes);
    assert!(!v.not_skin);

    assert!(DomainCheck::new(vec![e(0)], vec![e(1); OTHER_PROMPTS.len()]).is_err());
    assert!(DomainCheck::new(vec![e(0); SKIN_PROMPTS.len()], vec![vec![1.0; 3]; OTHER_PROMPTS.len()]).is_err());
    assert!(DomainCheck::new(vec![vec![f32::NAN; 4]; SKIN_PROMPTS.len()], vec![e(1); OTHER_PROMPTS.len()]).is_err());
}

/// The heat-map's arithmetic on vectors whose cosines are known by hand.
#[test]
fn the_heat_map_is_the_cosine_per_patch_and_its_softmax_share() {
    use dermlip::knowledge::heatmap::heat_map;
    // 4 patches (2×2) in 2-d: cosines with (1, 0) are 1, 0, -1 and 0.6.
    let patches = vec![vec![2.0, 0.0], vec![0.0, 3.0], vec![-1.0, 0.0], vec![3.0, 4.0]];
    let h = heat_map("nevus", &patches, &[5.0, 0.0]).unwrap();
    assert_eq!((h.rows, h.cols, h.label.as_str()), (2, 2, "nevus"));
    for (got, want) in h.cosine.iter().zip([1.0f32, 0.0, -1.0, 0.6]) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    // share = softmax(100·cos): e^100 : e^0 : e^-100 : e^60, i.e. patch 0 holds all but e^-40.
    let total: f32 = h.share.iter().sum();
    assert!((total - 1.0).abs() < 1e-6);
    assert!((h.share[3] / h.share[0] - (-40f32).exp()).abs() < 1e-20);
    assert!(h.share[0] > 0.999_999);
    assert!(heat_map("x", &patches[..3], &[1.0, 0.0]).unwrap_err().to_string().contains("square grid"));
    assert!(heat_map("x", &patches, &[1.0, 0.0, 0.0]).is_err());
}
