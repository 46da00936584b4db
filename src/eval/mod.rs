//! The Derm1M zero-shot evaluation protocol on a user's data: metrics of per-image class
//! probabilities, and agreement with a per-image reference file in DermFM-Zero's layout
//! (`image_path,true_label,predicted_label,probability_class_0,…`).

pub mod metrics;
pub mod plots;

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZeroShotReport {
    pub n_images: usize,
    pub classes: Vec<String>,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub weighted_f1: f64,
    /// One-vs-rest macro AUROC over the classes present in the labels.
    pub macro_auroc: Option<f64>,
    /// Classes left out of the AUROC mean (absent from the labels).
    pub auroc_skipped: Vec<String>,
    /// Top-5 accuracy, for label sets of more than 5 classes.
    pub top5_accuracy: Option<f64>,
    /// Rows: true class, columns: predicted class.
    pub confusion_matrix: Vec<Vec<u64>>,
}

/// Metrics of `probs[i]` (one row of class probabilities per image) against `labels[i]`.
pub fn zero_shot_report(classes: &[String], labels: &[usize], probs: &[Vec<f64>]) -> Result<ZeroShotReport> {
    let m = |e: metrics::MetricsError| Error::Input(e.to_string());
    if let Some(p) = probs.iter().find(|p| p.len() != classes.len()) {
        return Err(Error::Input(format!("a probability row has {} values for {} classes", p.len(), classes.len())));
    }
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let auroc = metrics::macro_auroc_ovr(labels, probs).map_err(m)?;
    Ok(ZeroShotReport {
        n_images: labels.len(),
        classes: classes.to_vec(),
        accuracy: metrics::accuracy(labels, &predicted).map_err(m)?,
        balanced_accuracy: metrics::balanced_accuracy(labels, &predicted).map_err(m)?,
        weighted_f1: metrics::weighted_f1(labels, &predicted, classes.len()).map_err(m)?,
        macro_auroc: auroc.macro_auroc,
        auroc_skipped: auroc.skipped.iter().map(|&c| classes[c].clone()).collect(),
        top5_accuracy: if classes.len() > 5 {
            Some(metrics::top_k_accuracy(labels, probs, 5).map_err(m)?)
        } else {
            None
        },
        confusion_matrix: metrics::confusion_matrix(labels, &predicted, classes.len()).map_err(m)?,
    })
}

impl ZeroShotReport {
    pub fn to_markdown(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.4}"));
        let mut s = format!(
            "| images | classes | accuracy | balanced accuracy | weighted F1 | macro AUROC (OvR) | top-5 |\n\
             |---|---|---|---|---|---|---|\n| {} | {} | {:.4} | {:.4} | {:.4} | {} | {} |\n",
            self.n_images,
            self.classes.len(),
            self.accuracy,
            self.balanced_accuracy,
            self.weighted_f1,
            opt(self.macro_auroc),
            opt(self.top5_accuracy)
        );
        if !self.auroc_skipped.is_empty() {
            s += &format!("\nAUROC leaves out classes absent from the labels: {}\n", self.auroc_skipped.join(", "));
        }
        if self.classes.len() <= 20 {
            s += "\nConfusion matrix (rows: true, columns: predicted)\n\n| true \\ predicted |";
            s += &self.classes.iter().map(|c| format!(" {c} |")).collect::<String>();
            s += &format!("\n|---|{}\n", "---|".repeat(self.classes.len()));
            for (c, row) in self.classes.iter().zip(&self.confusion_matrix) {
                s += &format!("| {c} |{}\n", row.iter().map(|n| format!(" {n} |")).collect::<String>());
            }
        }
        s
    }
}

/// One row of a DermFM-Zero per-image prediction file.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferencePrediction {
    pub image_path: String,
    pub true_label: usize,
    pub predicted_label: usize,
    pub probs: Vec<f64>,
}

pub fn read_reference_predictions(text: &str) -> Result<Vec<ReferencePrediction>> {
    let bad = |line: usize, why: String| Error::Input(format!("reference predictions, line {line}: {why}"));
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(path), Some(truth), Some(pred)) = (col("image_path"), col("true_label"), col("predicted_label")) else {
        return Err(bad(1, "expected columns image_path, true_label, predicted_label, probability_class_0, …".into()));
    };
    let prob_cols: Vec<usize> = (0..).map_while(|k| col(&format!("probability_class_{k}"))).collect();
    if prob_cols.is_empty() {
        return Err(bad(1, "no probability_class_0 column".into()));
    }
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let r = record.map_err(|e| bad(line, e.to_string()))?;
        let num = |c: usize| r.get(c).unwrap_or("").trim().to_string();
        let int =
            |c: usize| num(c).parse::<usize>().map_err(|_| bad(line, format!("\"{}\" is not a class index", num(c))));
        let probs = prob_cols
            .iter()
            .map(|&c| num(c).parse::<f64>().map_err(|_| bad(line, format!("\"{}\" is not a probability", num(c)))))
            .collect::<Result<Vec<f64>>>()?;
        out.push(ReferencePrediction {
            image_path: num(path),
            true_label: int(truth)?,
            predicted_label: int(pred)?,
            probs,
        });
    }
    Ok(out)
}

/// How far our per-image probabilities are from a reference file's, matched by file name.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// Our images found in the reference (a duplicated image counts each time).
    pub matched: usize,
    pub only_ours: Vec<String>,
    pub only_reference: usize,
    pub top1_agreement: f64,
    pub max_abs_prob_diff: f64,
    pub mean_abs_prob_diff: f64,
}

/// File name without directories: the reference files were written on another machine.
fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

pub fn compare_with_reference(ours: &[(String, Vec<f64>)], reference: &[ReferencePrediction]) -> Result<Agreement> {
    let by_name: HashMap<&str, &ReferencePrediction> =
        reference.iter().map(|r| (file_name(&r.image_path), r)).collect();
    let (mut matched, mut same_top1, mut max_diff, mut sum_diff, mut n_values) = (0, 0, 0f64, 0f64, 0usize);
    let mut only_ours = Vec::new();
    let mut reference_used = std::collections::HashSet::new();
    for (path, probs) in ours {
        let Some(r) = by_name.get(file_name(path)) else {
            only_ours.push(path.clone());
            continue;
        };
        if r.probs.len() != probs.len() {
            return Err(Error::Input(format!(
                "{path}: the reference has {} classes, our label set {}",
                r.probs.len(),
                probs.len()
            )));
        }
        matched += 1;
        reference_used.insert(file_name(path));
        same_top1 += usize::from(argmax(probs) == argmax(&r.probs));
        for (a, b) in probs.iter().zip(&r.probs) {
            max_diff = max_diff.max((a - b).abs());
            sum_diff += (a - b).abs();
            n_values += 1;
        }
    }
    Ok(Agreement {
        matched,
        only_reference: by_name.len() - reference_used.len(),
        only_ours,
        top1_agreement: if matched == 0 { 0.0 } else { same_top1 as f64 / matched as f64 },
        max_abs_prob_diff: max_diff,
        mean_abs_prob_diff: if n_values == 0 { 0.0 } else { sum_diff / n_values as f64 },
    })
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// Recall@K of paired images and captions (row i ↔ row i), both directions, as open_clip's
/// `get_clip_metrics` on cosine similarities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetrievalReport {
    pub n_pairs: usize,
    pub ks: Vec<usize>,
    pub image_to_text: Vec<f64>,
    pub text_to_image: Vec<f64>,
}

/// The K of the Derm1M retrieval tables.
pub const RECALL_KS: [usize; 5] = [1, 5, 10, 50, 200];

pub fn retrieval_report(images: &[Vec<f32>], texts: &[Vec<f32>], ks: &[usize]) -> Result<RetrievalReport> {
    let m = |e: metrics::MetricsError| Error::Input(e.to_string());
    if images.len() != texts.len() {
        return Err(Error::Input(format!("{} images but {} captions", images.len(), texts.len())));
    }
    let norm = |v: &Vec<f32>| crate::knowledge::zero_shot::l2_normalize(v);
    let (i, t): (Vec<Vec<f32>>, Vec<Vec<f32>>) = (images.iter().map(norm).collect(), texts.iter().map(norm).collect());
    let sim: Vec<Vec<f64>> =
        i.iter().map(|a| t.iter().map(|b| a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum()).collect()).collect();
    Ok(RetrievalReport {
        n_pairs: images.len(),
        ks: ks.to_vec(),
        image_to_text: metrics::recall_at_k(&sim, ks).map_err(m)?,
        text_to_image: metrics::recall_at_k(&metrics::transpose(&sim).map_err(m)?, ks).map_err(m)?,
    })
}

/// Concept annotation as Derm1M reports it: AUROC of each concept's presence score against the
/// binary annotations, their mean, and how many exceed 0.7.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConceptReport {
    pub per_concept: Vec<(String, Option<f64>)>,
    pub mean_auroc: Option<f64>,
    pub above_0_7: usize,
    /// Concepts whose annotations are all 0 or all 1 (no AUROC).
    pub undefined: Vec<String>,
}

/// `present[i][c]`: annotation of concept c on image i; `scores[i][c]`: its presence score.
pub fn concept_report(concepts: &[String], present: &[Vec<bool>], scores: &[Vec<f32>]) -> Result<ConceptReport> {
    if present.len() != scores.len() {
        return Err(Error::Input(format!("{} annotation rows but {} score rows", present.len(), scores.len())));
    }
    let mut per_concept = Vec::with_capacity(concepts.len());
    for (c, name) in concepts.iter().enumerate() {
        let y: Vec<bool> = present.iter().map(|r| r[c]).collect();
        let s: Vec<f64> = scores.iter().map(|r| r[c] as f64).collect();
        let auc = metrics::roc_auc_binary(&y, &s).map_err(|e| Error::Input(format!("concept \"{name}\": {e}")))?;
        per_concept.push((name.clone(), auc));
    }
    let defined: Vec<f64> = per_concept.iter().filter_map(|(_, a)| *a).collect();
    Ok(ConceptReport {
        mean_auroc: (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64),
        above_0_7: defined.iter().filter(|&&a| a > 0.7).count(),
        undefined: per_concept.iter().filter(|(_, a)| a.is_none()).map(|(n, _)| n.clone()).collect(),
        per_concept,
    })
}

/// One linear-probe run: multinomial logistic regression on frozen, L2-normalised image
/// embeddings, fitted on a per-class fraction of train+val, scored on test.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeReport {
    pub fraction: f64,
    pub n_train: usize,
    pub n_test: usize,
    pub c: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub weighted_f1: f64,
    /// One-vs-one macro AUROC (the Derm1M probe's AUROC).
    pub macro_auroc: Option<f64>,
    pub converged: bool,
}

pub fn linear_probe_report(
    train: (&[Vec<f32>], &[usize]),
    test: (&[Vec<f32>], &[usize]),
    n_classes: usize,
    fraction: f64,
    seed: u64,
) -> Result<ProbeReport> {
    let m = |e: metrics::MetricsError| Error::Input(e.to_string());
    // Features are L2-normalised, so cached (stored normalised) and fresh embeddings agree.
    let feature =
        |r: &Vec<f32>| -> Vec<f64> { crate::knowledge::zero_shot::l2_normalize(r).iter().map(|&x| x as f64).collect() };
    let to64 = |rows: &[Vec<f32>]| -> Vec<Vec<f64>> { rows.iter().map(feature).collect() };
    let picked = metrics::few_shot_indices(train.1, fraction, seed).map_err(m)?;
    let x: Vec<Vec<f64>> = picked.iter().map(|&i| feature(&train.0[i])).collect();
    let y: Vec<usize> = picked.iter().map(|&i| train.1[i]).collect();
    let dim = x.first().map_or(0, Vec::len);
    let probe = metrics::LogisticRegression::derm1m(dim, n_classes);
    let fitted = probe.fit(&x, &y, n_classes).map_err(m)?;
    let test_x = to64(test.0);
    let probs = fitted.predict_proba(&test_x).map_err(m)?;
    let pred = fitted.predict(&test_x).map_err(m)?;
    Ok(ProbeReport {
        fraction,
        n_train: picked.len(),
        n_test: test.1.len(),
        c: probe.c,
        accuracy: metrics::accuracy(test.1, &pred).map_err(m)?,
        balanced_accuracy: metrics::balanced_accuracy(test.1, &pred).map_err(m)?,
        weighted_f1: metrics::weighted_f1(test.1, &pred, n_classes).map_err(m)?,
        macro_auroc: metrics::macro_auroc_ovo(test.1, &probs).map_err(m)?.macro_auroc,
        converged: fitted.converged,
    })
}
