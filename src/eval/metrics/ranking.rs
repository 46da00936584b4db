//! Binary ranking metrics (ROC curve, AUROC, average precision) and their one-vs-rest and one-vs-one
//! multiclass macro averages, as scikit-learn computes them.

use super::{check_finite, check_labels, check_len, check_matrix, check_nonempty, MetricsError, Result};

/// sklearn's `roc_curve(y_true, scores, drop_intermediate=False)`: one point per distinct score, from
/// the highest threshold down, after a first point `(0, 0)` whose threshold is `+inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// Macro one-vs-rest AUROC. A class whose one-vs-rest split has only one side (absent from `y_true`,
/// or every sample) has no AUROC; it is left out of the mean and listed in `skipped`. sklearn raises
/// an error there instead.
#[derive(Debug, Clone, PartialEq)]
pub struct OvrAuroc {
    /// Mean over the classes that have an AUROC; `None` when none has.
    pub macro_auroc: Option<f64>,
    /// Per class: AUROC of `y == c` against `probs[.][c]`.
    pub per_class: Vec<Option<f64>>,
    /// Classes left out of the mean, ascending.
    pub skipped: Vec<usize>,
}

/// Macro one-vs-one AUROC (Hand & Till, sklearn `multi_class='ovo', average='macro'`). Pairs with a
/// class absent from `y_true` are left out of the mean; those classes are listed in `skipped`.
#[derive(Debug, Clone, PartialEq)]
pub struct OvoAuroc {
    /// Mean over the pairs of present classes; `None` when fewer than two classes are present.
    pub macro_auroc: Option<f64>,
    /// Classes absent from `y_true`, ascending.
    pub skipped: Vec<usize>,
}

/// Cumulative counts at each distinct score, highest score first (sklearn `_binary_clf_curve`).
struct Counts {
    fps: Vec<u64>,
    tps: Vec<u64>,
    thresholds: Vec<f64>,
}

impl Counts {
    fn positives(&self) -> u64 {
        self.tps.last().copied().unwrap_or(0)
    }
    fn negatives(&self) -> u64 {
        self.fps.last().copied().unwrap_or(0)
    }
}

fn binary_counts(y_true: &[bool], scores: &[f64]) -> Result<Counts> {
    check_nonempty("y_true", y_true.len())?;
    check_len("scores", scores.len(), y_true.len())?;
    check_finite("scores", scores)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut c = Counts { fps: Vec::new(), tps: Vec::new(), thresholds: Vec::new() };
    let (mut tp, mut fp) = (0u64, 0u64);
    for (pos, &i) in order.iter().enumerate() {
        if y_true[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        // `!=` (not total_cmp) so that -0.0 and 0.0 form one threshold, as in numpy.
        if order.get(pos + 1).is_none_or(|&next| scores[next] != scores[i]) {
            c.tps.push(tp);
            c.fps.push(fp);
            c.thresholds.push(scores[i]);
        }
    }
    Ok(c)
}

/// ROC curve of binary labels against scores (sklearn `roc_curve(drop_intermediate=False)`); errors
/// when `y_true` lacks positives or negatives, where sklearn would return NaN rates.
pub fn roc_curve(y_true: &[bool], scores: &[f64]) -> Result<RocCurve> {
    let c = binary_counts(y_true, scores)?;
    let (p, n) = (c.positives(), c.negatives());
    if p == 0 || n == 0 {
        return Err(MetricsError::Invalid(format!(
            "roc_curve needs positive and negative samples, got {p} positive and {n} negative"
        )));
    }
    let mut roc = RocCurve { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f64::INFINITY] };
    for i in 0..c.thresholds.len() {
        roc.fpr.push(c.fps[i] as f64 / n as f64);
        roc.tpr.push(c.tps[i] as f64 / p as f64);
        roc.thresholds.push(c.thresholds[i]);
    }
    Ok(roc)
}

fn auroc_from_counts(c: &Counts) -> Option<f64> {
    let (p, n) = (c.positives(), c.negatives());
    if p == 0 || n == 0 {
        return None;
    }
    // Trapezoids under the ROC step curve in integer units: exact, and ties get half credit.
    let (mut area2, mut prev_fp, mut prev_tp) = (0u128, 0u64, 0u64);
    for (&fp, &tp) in c.fps.iter().zip(&c.tps) {
        area2 += u128::from(fp - prev_fp) * u128::from(tp + prev_tp);
        (prev_fp, prev_tp) = (fp, tp);
    }
    Some(area2 as f64 / (2.0 * p as f64 * n as f64))
}

/// Area under the ROC curve (sklearn `roc_auc_score`; tied scores count half); `None` when `y_true`
/// holds only one class.
pub fn roc_auc_binary(y_true: &[bool], scores: &[f64]) -> Result<Option<f64>> {
    Ok(auroc_from_counts(&binary_counts(y_true, scores)?))
}

/// Average precision, Σₙ (Rₙ − Rₙ₋₁)·Pₙ over distinct thresholds (sklearn `average_precision_score`);
/// `None` when `y_true` has no positive (sklearn warns and returns 0 there).
pub fn average_precision(y_true: &[bool], scores: &[f64]) -> Result<Option<f64>> {
    let c = binary_counts(y_true, scores)?;
    let p = c.positives();
    if p == 0 {
        return Ok(None);
    }
    let (mut ap, mut prev_tp) = (0.0, 0u64);
    for (&fp, &tp) in c.fps.iter().zip(&c.tps) {
        ap += (tp - prev_tp) as f64 / p as f64 * (tp as f64 / (tp + fp) as f64);
        prev_tp = tp;
    }
    Ok(Some(ap))
}

fn check_multiclass(y_true: &[usize], probs: &[Vec<f64>]) -> Result<usize> {
    check_nonempty("y_true", y_true.len())?;
    check_len("probs", probs.len(), y_true.len())?;
    let k = check_matrix("probs", probs)?;
    check_labels("y_true", y_true, k)?;
    Ok(k)
}

/// Macro one-vs-rest AUROC over the columns of `probs` (sklearn `roc_auc_score(multi_class='ovr',
/// average='macro')`), skipping classes without both sides; see [`OvrAuroc`]. Rows need not sum to 1.
pub fn macro_auroc_ovr(y_true: &[usize], probs: &[Vec<f64>]) -> Result<OvrAuroc> {
    let k = check_multiclass(y_true, probs)?;
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let yc: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        let sc: Vec<f64> = probs.iter().map(|r| r[c]).collect();
        per_class.push(auroc_from_counts(&binary_counts(&yc, &sc)?));
    }
    let present: Vec<f64> = per_class.iter().flatten().copied().collect();
    let skipped = (0..k).filter(|&c| per_class[c].is_none()).collect();
    let macro_auroc = (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64);
    Ok(OvrAuroc { macro_auroc, per_class, skipped })
}

/// Macro one-vs-one AUROC (sklearn `multi_class='ovo', average='macro'`, the Derm1M linear-probe
/// AUROC): for each pair `a < b` of present classes, the mean of AUROC(a vs b on `probs[.][a]`) and
/// AUROC(b vs a on `probs[.][b]`) over samples of those two classes; then the mean over pairs.
pub fn macro_auroc_ovo(y_true: &[usize], probs: &[Vec<f64>]) -> Result<OvoAuroc> {
    let k = check_multiclass(y_true, probs)?;
    let mut count = vec![0usize; k];
    y_true.iter().for_each(|&t| count[t] += 1);
    let present: Vec<usize> = (0..k).filter(|&c| count[c] > 0).collect();
    let skipped = (0..k).filter(|&c| count[c] == 0).collect();
    let mut pair_scores = Vec::new();
    for (ia, &a) in present.iter().enumerate() {
        for &b in &present[ia + 1..] {
            let idx: Vec<usize> = (0..y_true.len()).filter(|&i| y_true[i] == a || y_true[i] == b).collect();
            let one_side = |cls: usize| -> Result<f64> {
                let yc: Vec<bool> = idx.iter().map(|&i| y_true[i] == cls).collect();
                let sc: Vec<f64> = idx.iter().map(|&i| probs[i][cls]).collect();
                // Both classes have samples, so the AUROC exists.
                auroc_from_counts(&binary_counts(&yc, &sc)?)
                    .ok_or_else(|| MetricsError::Invalid(format!("ovo pair ({a}, {b}) has one class")))
            };
            pair_scores.push((one_side(a)? + one_side(b)?) / 2.0);
        }
    }
    let macro_auroc = (!pair_scores.is_empty()).then(|| pair_scores.iter().sum::<f64>() / pair_scores.len() as f64);
    Ok(OvoAuroc { macro_auroc, skipped })
}
