//! Evaluation metrics for the clinical-knowledge suite (zero-shot, linear probe, retrieval), written to
//! give scikit-learn's numbers, plus the linear-probe classifier ([`LogisticRegression`]).
//!
//! Plain `f64` Rust with no threads and no I/O, so it also builds for `wasm32-unknown-unknown`. Every
//! function checks its input and returns a [`MetricsError`] instead of panicking. Labels are class
//! indices `0..n_classes`; a score matrix is one row per sample and one column per class.
//! `tests/suite/metrics_parity.rs` compares every function with scikit-learn.

mod lbfgs;
mod logreg;
mod ranking;

pub use logreg::{few_shot_indices, Fitted, LogisticRegression};
pub use ranking::{
    average_precision, macro_auroc_ovo, macro_auroc_ovr, roc_auc_binary, roc_curve, OvoAuroc, OvrAuroc, RocCurve,
};

/// A bad input to a metric or to the linear probe. The message names the argument and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("{what} has {got} entries but {expected} were expected")]
    LengthMismatch { what: &'static str, expected: usize, got: usize },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{what}[{index}] = {label} is not a class index below {n_classes}")]
    LabelOutOfRange { what: &'static str, index: usize, label: usize, n_classes: usize },
    #[error("{what} at {at} is {value}, not a finite number")]
    NonFinite { what: &'static str, at: String, value: f64 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(MetricsError::LengthMismatch { what, expected, got });
    }
    Ok(())
}

fn check_nonempty(what: &'static str, len: usize) -> Result<()> {
    if len == 0 {
        return Err(MetricsError::Empty(what));
    }
    Ok(())
}

fn check_labels(what: &'static str, y: &[usize], n_classes: usize) -> Result<()> {
    match y.iter().position(|&l| l >= n_classes) {
        Some(index) => Err(MetricsError::LabelOutOfRange { what, index, label: y[index], n_classes }),
        None => Ok(()),
    }
}

fn check_finite(what: &'static str, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(MetricsError::NonFinite { what, at: format!("index {i}"), value: v[i] }),
        None => Ok(()),
    }
}

/// Checks that `m` is a non-empty rectangular matrix of finite values; returns its column count.
fn check_matrix(what: &'static str, m: &[Vec<f64>]) -> Result<usize> {
    check_nonempty(what, m.len())?;
    let cols = m[0].len();
    if cols == 0 {
        return Err(MetricsError::Invalid(format!("{what} has rows with no columns")));
    }
    for (i, row) in m.iter().enumerate() {
        if row.len() != cols {
            return Err(MetricsError::Invalid(format!(
                "{what} is ragged: row {i} has {} columns, row 0 has {cols}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|x| !x.is_finite()) {
            return Err(MetricsError::NonFinite { what, at: format!("row {i}, column {j}"), value: row[j] });
        }
    }
    Ok(cols)
}

fn check_pair(y_true: &[usize], y_pred: &[usize]) -> Result<()> {
    check_nonempty("y_true", y_true.len())?;
    check_len("y_pred", y_pred.len(), y_true.len())
}

/// Fraction of samples with `y_pred == y_true` (sklearn `accuracy_score`).
pub fn accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    check_pair(y_true, y_pred)?;
    let hits = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// Mean per-class recall over the classes present in `y_true` (sklearn `balanced_accuracy_score`).
pub fn balanced_accuracy(y_true: &[usize], y_pred: &[usize]) -> Result<f64> {
    check_pair(y_true, y_pred)?;
    let n_classes = y_true.iter().chain(y_pred).max().map_or(0, |&m| m + 1);
    let (mut support, mut hits) = (vec![0u64; n_classes], vec![0u64; n_classes]);
    for (&t, &p) in y_true.iter().zip(y_pred) {
        support[t] += 1;
        hits[t] += u64::from(t == p);
    }
    let recalls: Vec<f64> =
        support.iter().zip(&hits).filter(|(s, _)| **s > 0).map(|(&s, &h)| h as f64 / s as f64).collect();
    Ok(recalls.iter().sum::<f64>() / recalls.len() as f64)
}

/// `n_classes × n_classes` counts, rows = true class, columns = predicted class (sklearn `confusion_matrix`).
pub fn confusion_matrix(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<Vec<Vec<u64>>> {
    check_pair(y_true, y_pred)?;
    check_labels("y_true", y_true, n_classes)?;
    check_labels("y_pred", y_pred, n_classes)?;
    let mut m = vec![vec![0u64; n_classes]; n_classes];
    for (&t, &p) in y_true.iter().zip(y_pred) {
        m[t][p] += 1;
    }
    Ok(m)
}

/// Fraction of samples whose true class is among the `k` highest scores (sklearn `top_k_accuracy_score`).
///
/// Ties are broken as sklearn does for multiclass scores (a stable ascending argsort, reversed): among
/// equal scores the higher class index ranks first. So the true class `t` ranks at
/// `#{j : s_j > s_t} + #{j > t : s_j == s_t}`. This equals sklearn called with
/// `labels=range(n_classes)` for three or more columns. With two columns sklearn switches to a
/// threshold rule (`s_1 > 0.5`, or `> 0` for non-probabilities) that this function does not copy.
pub fn top_k_accuracy(y_true: &[usize], scores: &[Vec<f64>], k: usize) -> Result<f64> {
    check_nonempty("y_true", y_true.len())?;
    check_len("scores", scores.len(), y_true.len())?;
    let n_classes = check_matrix("scores", scores)?;
    check_labels("y_true", y_true, n_classes)?;
    if k == 0 {
        return Err(MetricsError::Invalid("top_k_accuracy: k must be at least 1".into()));
    }
    let hits = y_true
        .iter()
        .zip(scores)
        .filter(|(&t, row)| {
            let st = row[t];
            let ahead = row.iter().enumerate().filter(|&(j, &s)| s > st || (s == st && j > t)).count();
            ahead < k
        })
        .count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// Support-weighted mean of per-class F1 (sklearn `f1_score(average='weighted', zero_division=0)`).
pub fn weighted_f1(y_true: &[usize], y_pred: &[usize], n_classes: usize) -> Result<f64> {
    let cm = confusion_matrix(y_true, y_pred, n_classes)?;
    let (mut num, mut den) = (0.0, 0.0);
    for c in 0..n_classes {
        let tp = cm[c][c] as f64;
        let support: u64 = cm[c].iter().sum();
        let predicted: u64 = cm.iter().map(|r| r[c]).sum();
        let denom = (support + predicted) as f64;
        let f1 = if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        num += support as f64 * f1;
        den += support as f64;
    }
    Ok(num / den)
}

/// Rank of the matching column for each row of a square similarity matrix: the number of columns
/// scoring strictly higher than column `i` in row `i` (0 = retrieved first).
pub fn retrieval_ranks(similarity: &[Vec<f64>]) -> Result<Vec<usize>> {
    let cols = check_matrix("similarity", similarity)?;
    if cols != similarity.len() {
        return Err(MetricsError::Invalid(format!(
            "similarity must be square (row i matches column i), got {} × {cols}",
            similarity.len()
        )));
    }
    Ok(similarity.iter().enumerate().map(|(i, row)| row.iter().filter(|&&s| s > row[i]).count()).collect())
}

/// Recall@K for retrieval where row `i` matches column `i`: the fraction of rows with rank `< k`.
///
/// rank = the number of columns with a strictly greater score ([`retrieval_ranks`]). open_clip's
/// `get_clip_metrics` takes the position in `argsort(logits, descending=True)` instead; torch's sort
/// orders equal scores arbitrarily, so with ties its ranks are ours or worse. Ours is the
/// tie-optimistic, deterministic reading; on tie-free scores the two are identical. Rows are queries:
/// pass image × text similarities for image→text and [`transpose`] them for text→image.
pub fn recall_at_k(similarity: &[Vec<f64>], ks: &[usize]) -> Result<Vec<f64>> {
    let ranks = retrieval_ranks(similarity)?;
    if let Some(&k) = ks.iter().find(|&&k| k == 0) {
        return Err(MetricsError::Invalid(format!("recall_at_k: k = {k}, must be at least 1")));
    }
    let n = ranks.len() as f64;
    Ok(ks.iter().map(|&k| ranks.iter().filter(|&&r| r < k).count() as f64 / n).collect())
}

/// The transpose of a rectangular, finite matrix (text→image retrieval from an image × text similarity).
pub fn transpose(m: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let cols = check_matrix("matrix", m)?;
    Ok((0..cols).map(|j| m.iter().map(|row| row[j]).collect()).collect())
}
