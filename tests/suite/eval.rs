//! The zero-shot evaluation: metrics of DermFM-Zero's published per-image predictions equal
//! scikit-learn's, and `dermlip eval zero-shot` reproduces open_clip's per-image probabilities.

use crate::common;

use std::process::Command;

use common::*;
use dermlip::eval::{compare_with_reference, read_reference_predictions, zero_shot_report};
use dermlip::knowledge::labels::LabelSet;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: {a} vs sklearn {b}");
}

#[test]
fn metrics_of_published_predictions_equal_sklearn() {
    let dir = fixtures().join("derm1m-reference");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_metrics.json")).unwrap()).unwrap();
    for (file, set) in [("HAM_DermLIP-ViT-B-16.csv", "ham7"), ("PAD_DermLIP-ViT-B-16.csv", "pad6")] {
        let rows = read_reference_predictions(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let e = &expected[file];
        assert_eq!(rows.len() as u64, e["n"].as_u64().unwrap());
        let classes = LabelSet::builtin(set).unwrap().classes().to_vec();
        let y: Vec<usize> = rows.iter().map(|r| r.true_label).collect();
        let p: Vec<Vec<f64>> = rows.iter().map(|r| r.probs.clone()).collect();
        let r = zero_shot_report(&classes, &y, &p).unwrap();
        close(r.accuracy, e["accuracy"].as_f64().unwrap(), "accuracy");
        close(r.balanced_accuracy, e["balanced_accuracy"].as_f64().unwrap(), "balanced accuracy");
        close(r.weighted_f1, e["weighted_f1"].as_f64().unwrap(), "weighted F1");
        close(r.macro_auroc.unwrap(), e["macro_auroc_ovr"].as_f64().unwrap(), "macro AUROC");
        let cm: Vec<Vec<u64>> = serde_json::from_value(e["confusion_matrix"].clone()).unwrap();
        assert_eq!(r.confusion_matrix, cm);
        // Agreement of a file with itself is perfect.
        let ours: Vec<(String, Vec<f64>)> = rows.iter().map(|r| (r.image_path.clone(), r.probs.clone())).collect();
        let g = compare_with_reference(&ours, &rows).unwrap();
        assert_eq!((g.matched, g.top1_agreement, g.max_abs_prob_diff), (rows.len(), 1.0, 0.0));
    }
    // The paper's figure for DermLIP ViT-B/16 on HAM.
    let rows =
        read_reference_predictions(&std::fs::read_to_string(dir.join("HAM_DermLIP-ViT-B-16.csv")).unwrap()).unwrap();
    let correct = rows.iter().filter(|r| r.predicted_label == r.true_label).count();
    assert_eq!(format!("{:.4}", correct as f64 / rows.len() as f64), "0.6813");
}

#[test]
fn bad_reference_files_are_refused() {
    assert!(read_reference_predictions("a,b\n1,2\n").unwrap_err().to_string().contains("image_path"));
    let bad = "image_path,true_label,predicted_label,probability_class_0\nx.jpg,zero,0,1.0\n";
    assert!(read_reference_predictions(bad).unwrap_err().to_string().contains("line 2"));
}

/// End to end on the tiny fixture model: the reference file is open_clip's own zero-shot
/// probabilities (tests/fixtures/reference/tiny-gelu.json, HAM classes, Derm1M templates) in
/// DermFM-Zero's layout; one row names a missing file, which is skipped and counted.
#[test]
fn cli_eval_zero_shot_matches_open_clip() {
    let r = reference("tiny-gelu");
    let dir = std::env::temp_dir().join(format!("dermlip-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("image_path,label\n");
    let mut reference = String::from("image_path,true_label,predicted_label");
    for k in 0..7 {
        reference += &format!(",probability_class_{k}");
    }
    reference.push('\n');
    for (i, im) in r.images.iter().enumerate() {
        let path = fixtures().join(&im.file);
        let label = i % 7;
        csv += &format!("{},{}\n", path.display(), label);
        let probs: Vec<String> = r.zero_shot.probs[i].iter().map(|p| p.to_string()).collect();
        reference += &format!(
            "/elsewhere/{},{label},{},{}\n",
            im.file.rsplit('/').next().unwrap(),
            r.zero_shot.top1[i],
            probs.join(",")
        );
    }
    csv += "not/there.jpg,melanoma\n";
    csv += &format!("{},0\n", fixtures().join(&r.images[0].file).display()); // a duplicate row
    std::fs::write(dir.join("eval.csv"), &csv).unwrap();
    std::fs::write(dir.join("reference.csv"), &reference).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dermlip"))
        .args(["eval", "zero-shot", "--csv"])
        .arg(dir.join("eval.csv"))
        .args(["--label-set", "ham7", "--json", "--model"])
        .arg(model_dir("tiny-gelu"))
        .arg("--compare-reference")
        .arg(dir.join("reference.csv"))
        .arg("--plots")
        .arg(dir.join("plots"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], r.images.len() + 2);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    assert_eq!(v["duplicate_rows"], 1);
    let g = &v["reference_agreement"];
    assert_eq!(g["matched"], r.images.len() + 1);
    assert_eq!(g["only_reference"], 0);
    assert_eq!(g["top1_agreement"], 1.0);
    assert!(g["max_abs_prob_diff"].as_f64().unwrap() < 1e-3, "{g}");
    // Accuracy from open_clip's top-1 against the labels written above.
    let correct = r.zero_shot.top1.iter().enumerate().filter(|(i, t)| i % 7 == **t).count()
        + usize::from(r.zero_shot.top1[0] == 0);
    let acc = v["report"]["accuracy"].as_f64().unwrap();
    assert!((acc - correct as f64 / (r.images.len() + 1) as f64).abs() < 1e-12);
    // The heat map shows every cell of the reported confusion matrix.
    let svg = std::fs::read_to_string(dir.join("plots/confusion_matrix.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let classes = LabelSet::builtin("ham7").unwrap().classes().to_vec();
    for (t, row) in v["report"]["confusion_matrix"].as_array().unwrap().iter().enumerate() {
        for (p, count) in row.as_array().unwrap().iter().enumerate() {
            assert!(svg.contains(&format!("<title>{} → {}: {count}</title>", classes[t], classes[p])), "cell {t},{p}");
        }
    }
    let roc = std::fs::read_to_string(dir.join("plots/roc.svg")).unwrap();
    assert!(roc.matches("<polyline").count() >= 2);
    std::fs::remove_dir_all(&dir).ok();
}
