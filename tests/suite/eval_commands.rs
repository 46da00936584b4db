//! `dermlip eval retrieval | concepts | linear-probe` end to end on the fixture model, against
//! values computed directly from open_clip's reference outputs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use dermlip::knowledge::zero_shot::l2_normalize;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dermlip-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str], extra: &[&Path]) -> serde_json::Value {
    let dir = tmpdir("out");
    let out_json = dir.join(format!("{}.json", args[1]));
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .args(args)
        .args(extra)
        .arg("--model")
        .arg(model_dir("tiny-gelu"))
        .arg("--out-json")
        .arg(&out_json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    l2_normalize(a).iter().zip(l2_normalize(b)).map(|(x, y)| x * y).sum()
}

#[test]
fn retrieval_recall_matches_open_clip_embeddings() {
    let r = reference("tiny-gelu");
    let n = r.texts.len().min(r.images.len());
    let dir = tmpdir("retrieval");
    let mut csv = String::from("image_path,caption\n");
    for i in 0..n {
        let caption = r.texts[i].text.replace('"', "\"\"");
        csv += &format!("{},\"{caption}\"\n", fixtures().join(&r.images[i].file).display());
    }
    let csv_path = dir.join("pairs.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let cache = dir.join("cache.dlemb");
    let args = ["eval", "retrieval", "--csv", csv_path.to_str().unwrap(), "--cache", cache.to_str().unwrap()];
    let v = run(&args, &[]);
    // Direct: rank of the true caption = number of captions scoring strictly higher.
    let ks = [1usize, 5, 10, 50, 200];
    let recall = |query: &dyn Fn(usize, usize) -> f32| -> Vec<f64> {
        let ranks: Vec<usize> = (0..n).map(|i| (0..n).filter(|&j| query(i, j) > query(i, i)).count()).collect();
        ks.iter().map(|&k| ranks.iter().filter(|&&r| r < k).count() as f64 / n as f64).collect()
    };
    let i2t = recall(&|i, j| cos(&r.images[i].embedding, &r.texts[j].embedding));
    let t2i = recall(&|i, j| cos(&r.images[j].embedding, &r.texts[i].embedding));
    let got = |key: &str| -> Vec<f64> { serde_json::from_value(v["report"][key].clone()).unwrap() };
    assert_eq!(got("image_to_text"), i2t);
    assert_eq!(got("text_to_image"), t2i);
    // Second run reads the cache and gives the same report.
    assert!(cache.exists());
    let again = run(&args, &[]);
    assert_eq!(again["report"], v["report"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Mann–Whitney AUROC with ties counted half.
fn auroc(y: &[bool], s: &[f32]) -> Option<f64> {
    let (mut num, mut pairs) = (0.0, 0.0);
    for (i, &yi) in y.iter().enumerate() {
        for (j, &yj) in y.iter().enumerate() {
            if yi && !yj {
                pairs += 1.0;
                num += if s[i] > s[j] {
                    1.0
                } else if s[i] == s[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    (pairs > 0.0).then(|| num / pairs)
}

#[test]
fn concept_auroc_matches_reference_scores() {
    #[derive(serde::Deserialize)]
    struct Fixture {
        concepts: Vec<dermlip::knowledge::concepts::Concept>,
        images: Vec<String>,
        scores: Vec<Vec<f32>>,
    }
    let f: Fixture =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("concepts/tiny-gelu.json")).unwrap()).unwrap();
    let names: Vec<&str> = f.concepts.iter().map(|c| c.name.as_str()).collect();
    // Annotations: an arbitrary fixed pattern, and one concept present everywhere (no AUROC).
    let truth = |i: usize, c: usize| if c == 0 { true } else { (i * 7 + c * 3) % 5 < 2 };
    let dir = tmpdir("concepts");
    let mut csv = format!("image_path,{}\n", names.join(","));
    for (i, img) in f.images.iter().enumerate() {
        let cells: Vec<&str> = (0..names.len()).map(|c| if truth(i, c) { "1" } else { "0" }).collect();
        csv += &format!("{},{}\n", fixtures().join(img).display(), cells.join(","));
    }
    let csv_path = dir.join("concepts.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let v = run(&["eval", "concepts", "--csv", csv_path.to_str().unwrap()], &[]);
    let per: Vec<(String, Option<f64>)> = serde_json::from_value(v["report"]["per_concept"].clone()).unwrap();
    for (c, (name, got)) in per.iter().enumerate() {
        assert_eq!(name, names[c]);
        let y: Vec<bool> = (0..f.images.len()).map(|i| truth(i, c)).collect();
        let s: Vec<f32> = f.scores.iter().map(|row| row[c]).collect();
        match (got, auroc(&y, &s)) {
            (None, None) => {}
            (Some(a), Some(b)) => {
                assert!((a - b).abs() < 1e-9 || ((a - b).abs() < 0.2 && near_tie(&s)), "{name}: {a} vs {b}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(v["report"]["undefined"], serde_json::json!([names[0]]));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scores closer than the Rust/PyTorch difference (1e-4) may order differently.
fn near_tie(s: &[f32]) -> bool {
    s.iter().enumerate().any(|(i, a)| s[i + 1..].iter().any(|b| (a - b).abs() < 1e-4 && a != b))
}

#[test]
fn linear_probe_runs_with_few_shot_counts() {
    let r = reference("tiny-gelu");
    let dir = tmpdir("probe");
    let mut csv = String::from("image_path,label,split\n");
    let labels: Vec<usize> = r.zero_shot.top1.clone();
    let mut train_counts = std::collections::BTreeMap::new();
    for (i, im) in r.images.iter().enumerate() {
        let split = if i % 4 == 3 {
            "test"
        } else if i % 4 == 2 {
            "val"
        } else {
            "train"
        };
        if split != "test" {
            *train_counts.entry(labels[i]).or_insert(0usize) += 1;
        }
        csv += &format!("{},{},{split}\n", fixtures().join(&im.file).display(), labels[i]);
    }
    let csv_path = dir.join("probe.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let v = run(
        &["eval", "linear-probe", "--csv", csv_path.to_str().unwrap(), "--label-set", "ham7", "--fractions", "0.1,1"],
        &[],
    );
    let reports = v["reports"].as_array().unwrap();
    for (rep, fraction) in reports.iter().zip([0.1f64, 1.0]) {
        let want: usize = train_counts.values().map(|&n| ((n as f64 * fraction) as usize).max(1)).sum();
        assert_eq!(rep["n_train"].as_u64().unwrap() as usize, want);
        let acc = rep["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!((rep["c"].as_f64().unwrap() - 16.0 * 7.0 / 100.0).abs() < 1e-12);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn index_and_search_rank_like_open_clip() {
    let r = reference("tiny-gelu");
    let dir = tmpdir("index");
    let images: Vec<PathBuf> = r.images.iter().take(8).map(|im| fixtures().join(&im.file)).collect();
    let collection = dir.join("gallery.dlemb");
    let model = model_dir("tiny-gelu");
    let status = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .arg("index")
        .args(&images)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&collection)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let query = &r.texts[0];
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .arg("search")
        .arg(&collection)
        .args(["--text", &query.text, "--top-k", "3", "--json", "--model"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hits: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut want: Vec<(usize, f32)> =
        (0..images.len()).map(|i| (i, cos(&query.embedding, &r.images[i].embedding))).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (h, (i, score)) in hits.iter().zip(&want) {
        assert_eq!(h["source"].as_str().unwrap(), images[*i].display().to_string());
        assert!((h["score"].as_f64().unwrap() as f32 - score).abs() < 1e-4);
    }
    // A collection is refused by another model.
    let other = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .arg("search")
        .arg(&collection)
        .args(["--text", "x", "--model"])
        .arg(model_dir("tiny-quickgelu"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("not comparable"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn eval_bad_inputs_are_named() {
    let dir = tmpdir("evalbad");
    let image = fixtures().join("images/coffee_odd_225x301.jpg");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "unknown.csv",
            format!("image_path,label\n{},psoriasis\n", image.display()).into_bytes(),
            "\"psoriasis\" is not one of",
        ),
        ("latin1.csv", b"image_path,label\ncaf\xe9.jpg,0\n".to_vec(), "not UTF-8"),
        ("empty.csv", b"image_path,label\n".to_vec(), "no rows"),
        ("columns.csv", b"path,diagnosis\nx.jpg,0\n".to_vec(), "image_path"),
    ];
    for (name, bytes, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
            .args(["eval", "zero-shot", "--label-set", "ham7", "--csv"])
            .arg(&p)
            .arg("--model")
            .arg(model_dir("tiny-gelu"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn linear_probe_uses_the_panderm_pre_head_feature() {
    // PanDerm's probe input is the pre-head feature (width 64 in the tiny fixture), not the
    // 32-d embedding; C = dim · classes / 100 shows which one was fitted.
    let r = reference("tiny-gelu");
    let dir = tmpdir("probe-panderm");
    let mut csv = String::from("image_path,label,split\n");
    for (i, im) in r.images.iter().enumerate().take(16) {
        let split = if i % 4 == 3 { "test" } else { "train" };
        csv += &format!("{},{},{split}\n", fixtures().join(&im.file).display(), i % 2);
    }
    let csv_path = dir.join("probe.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let out_json = dir.join("probe.json");
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .args(["eval", "linear-probe", "--csv", csv_path.to_str().unwrap(), "--labels", "melanoma,nevus"])
        .args(["--no-cache", "--model"])
        .arg(model_dir("tiny-panderm"))
        .arg("--out-json")
        .arg(&out_json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let c = v["reports"][0]["c"].as_f64().unwrap();
    assert!((c - 64.0 * 2.0 / 100.0).abs() < 1e-12, "C = {c}");
    std::fs::remove_dir_all(&dir).ok();
}
