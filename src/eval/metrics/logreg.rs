//! The linear probe: multinomial logistic regression with an L2 penalty on the weights, minimising
//! exactly what scikit-learn's `LogisticRegression(C=c, solver='lbfgs', fit_intercept=True)` minimises,
//! and the per-class few-shot subsampling of the Derm1M protocol.
//!
//! # Objective
//!
//! sklearn (checked in 1.9.1, `_logistic_regression_path`) documents `C·Σᵢ CEᵢ + ½‖W‖²` and minimises
//! the same function divided by `C·n`: `(1/n)·Σᵢ CEᵢ + ‖W‖²/(2·C·n)`, the intercepts unpenalised.
//! [`LogisticRegression::fit`] minimises that scaled form, so `tol` means what sklearn's `tol` means
//! (max |gradient| of the scaled objective), and it also stops like scipy's L-BFGS-B when an
//! iteration lowers the objective by at most `64·ε` relative (sklearn's `ftol`). With two classes it
//! fits, like sklearn, one binomial vector `w` (and `b`) and stores it as the rows `(−w/2, w/2)`.
//! The solver is the same algorithm as scipy's L-BFGS-B without bounds (first step of length 1,
//! memory 10, 50 evaluations per line search), and in the tests it takes the same iterations.
//!
//! # The Derm1M linear probe, and how `c` maps to it
//!
//! Derm1M (`linear_probe/linear_eval.py` → PanDerm/UNI `eval_linear_probe`) fits on train+val
//! features, unnormalised, with cost `C = feat_dim · n_classes / 100` ([`LogisticRegression::derm1m`]),
//! `n_classes` counted in the training labels. Its classifier is a torch `nn.Linear` from a seeded
//! random init, one `torch.optim.LBFGS(line_search_fn="strong_wolfe", max_iter=1000)` step, on
//! `mean CE + (1/C)·½·‖W‖_F`: the Frobenius norm itself, not its square. That penalty's gradient at
//! the optimum is `W/(2C‖W‖)` against `W/(C'n)` here, so the same solution needs
//! `C' = 2·C·‖W*‖_F / n`, which depends on the solution: there is no fixed mapping. Passing
//! `c = feat_dim·n_classes/100` gives sklearn's `LogisticRegression(C=c)` on the same features (the
//! protocol's cost, sklearn's penalty, which for n in the thousands regularises far less than the
//! torch probe), so scores can differ from the paper's. Derm1M scores the probe
//! with accuracy, weighted F1, balanced accuracy and one-vs-one macro AUROC ([`super::macro_auroc_ovo`]).

use super::lbfgs::{self, Stop};
use super::{check_labels, check_len, check_matrix, check_nonempty, MetricsError, Result};

/// Settings of the L2-penalised multinomial logistic regression (sklearn's names and meanings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticRegression {
    /// Inverse regularisation strength, sklearn's `C` (> 0).
    pub c: f64,
    /// Most L-BFGS iterations (sklearn's `max_iter`).
    pub max_iter: usize,
    /// Stop when max |gradient| of the `1/(C·n)`-scaled objective is ≤ `tol` (sklearn's `tol`).
    pub tol: f64,
}

impl Default for LogisticRegression {
    /// sklearn's defaults: `C = 1`, `max_iter = 100`, `tol = 1e-4`.
    fn default() -> Self {
        Self { c: 1.0, max_iter: 100, tol: 1e-4 }
    }
}

/// A fitted probe. Rows of `coef`/`intercept` follow `classes`, the labels seen in training.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Classes with training samples, ascending; the others get probability 0.
    pub classes: Vec<usize>,
    /// The `n_classes` given to `fit` (width of `predict_proba` rows).
    pub n_classes: usize,
    /// One weight row per entry of `classes`. For two classes sklearn's `coef_` is `coef[1] − coef[0]`
    /// (and the rows are `(−coef_/2, coef_/2)`).
    pub coef: Vec<Vec<f64>>,
    /// One intercept per entry of `classes`, centred to sum to zero (softmax ignores a common shift).
    pub intercept: Vec<f64>,
    /// sklearn's objective at the solution: `C·Σᵢ CEᵢ + ½‖W‖²` (two classes: `½‖w₁ − w₀‖²`).
    pub objective: f64,
    /// max |gradient| of the scaled objective at the solution.
    pub max_abs_grad: f64,
    /// L-BFGS iterations (scipy's `nit`, sklearn's `n_iter_`) and objective evaluations.
    pub n_iter: usize,
    pub n_evals: usize,
    /// True when the gradient or relative-reduction test stopped the solver (scipy's `success`).
    pub converged: bool,
}

/// The scaled objective `(1/n)·Σ CE + l2/2·‖W‖²`. Parameters are `blocks` blocks `[wₖ; bₖ]`: one per
/// class, or, for two classes, sklearn's single binomial block (logit of class 1 = `w·x + b`).
struct Problem<'a> {
    x: &'a [Vec<f64>],
    y: Vec<usize>,
    blocks: usize,
    d: usize,
    l2: f64,
}

impl Problem<'_> {
    fn value_grad(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.d;
        let inv_n = 1.0 / self.x.len() as f64;
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut z = vec![0.0; self.blocks];
        let mut loss = 0.0;
        for (xi, &yi) in self.x.iter().zip(&self.y) {
            for (c, zc) in z.iter_mut().enumerate() {
                let block = &theta[c * (d + 1)..(c + 1) * (d + 1)];
                *zc = block[d] + block[..d].iter().zip(xi).map(|(w, v)| w * v).sum::<f64>();
            }
            // Residual (p − onehot) per block; binomial: p = σ(z), CE = log(1 + eᶻ) − y·z.
            let residual: Vec<f64> = if self.blocks == 1 {
                let (zi, yf) = (z[0], yi as f64);
                loss += log_sum_exp(&[0.0, zi]) - yf * zi;
                vec![sigmoid(zi) - yf]
            } else {
                let lse = log_sum_exp(&z);
                loss += lse - z[yi];
                z.iter().enumerate().map(|(c, &zc)| (zc - lse).exp() - f64::from(u8::from(c == yi))).collect()
            };
            for (c, r) in residual.into_iter().enumerate() {
                let r = r * inv_n;
                let block = &mut grad[c * (d + 1)..(c + 1) * (d + 1)];
                block[..d].iter_mut().zip(xi).for_each(|(g, v)| *g += r * v);
                block[d] += r;
            }
        }
        let mut penalty = 0.0;
        for c in 0..self.blocks {
            let w = &theta[c * (d + 1)..c * (d + 1) + d];
            penalty += w.iter().map(|v| v * v).sum::<f64>();
            grad[c * (d + 1)..c * (d + 1) + d].iter_mut().zip(w).for_each(|(g, v)| *g += self.l2 * v);
        }
        loss * inv_n + 0.5 * self.l2 * penalty
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn log_sum_exp(z: &[f64]) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

impl LogisticRegression {
    /// The Derm1M/PanDerm probe settings: `C = feat_dim·n_classes/100`, 1000 iterations, sklearn's tol.
    pub fn derm1m(feat_dim: usize, n_classes: usize) -> Self {
        Self { c: (feat_dim * n_classes) as f64 / 100.0, max_iter: 1000, tol: 1e-4 }
    }

    /// Fits on `x` (one feature row per sample) and labels `y < n_classes`; needs two classes present.
    pub fn fit(&self, x: &[Vec<f64>], y: &[usize], n_classes: usize) -> Result<Fitted> {
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(MetricsError::Invalid(format!("LogisticRegression: c = {} must be positive", self.c)));
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return Err(MetricsError::Invalid(format!("LogisticRegression: tol = {} must be ≥ 0", self.tol)));
        }
        check_nonempty("x", x.len())?;
        let d = check_matrix("x", x)?;
        check_len("y", y.len(), x.len())?;
        check_labels("y", y, n_classes)?;
        let mut count = vec![0usize; n_classes];
        y.iter().for_each(|&l| count[l] += 1);
        let classes: Vec<usize> = (0..n_classes).filter(|&c| count[c] > 0).collect();
        if classes.len() < 2 {
            return Err(MetricsError::Invalid(format!(
                "LogisticRegression: y has {} distinct class(es), at least 2 are needed",
                classes.len()
            )));
        }
        let k = classes.len();
        let mut index = vec![0usize; n_classes];
        classes.iter().enumerate().for_each(|(i, &c)| index[c] = i);
        let n = x.len() as f64;
        let blocks = if k == 2 { 1 } else { k };
        let problem = Problem { x, y: y.iter().map(|&l| index[l]).collect(), blocks, d, l2: 1.0 / (self.c * n) };
        let options = lbfgs::Options {
            max_iter: self.max_iter,
            gtol: self.tol,
            ftol: 64.0 * f64::EPSILON,
            memory: 10,
            max_line_evals: 50,
        };
        let out = lbfgs::minimize(|t, g| problem.value_grad(t, g), vec![0.0; blocks * (d + 1)], &options);
        let block = |c: usize| &out.x[c * (d + 1)..(c + 1) * (d + 1)];
        let (coef, mut intercept): (Vec<Vec<f64>>, Vec<f64>) = if blocks == 1 {
            // Symmetric two-row form of the binomial fit: softmax of (−z/2, z/2) is (1 − σ(z), σ(z)).
            let half: Vec<f64> = block(0).iter().map(|v| 0.5 * v).collect();
            let neg: Vec<f64> = half.iter().map(|v| -v).collect();
            (vec![neg[..d].to_vec(), half[..d].to_vec()], vec![neg[d], half[d]])
        } else {
            ((0..k).map(|c| block(c)[..d].to_vec()).collect(), (0..k).map(|c| block(c)[d]).collect())
        };
        let mean = intercept.iter().sum::<f64>() / k as f64;
        intercept.iter_mut().for_each(|b| *b -= mean);
        Ok(Fitted {
            classes,
            n_classes,
            coef,
            intercept,
            objective: out.f * self.c * n,
            max_abs_grad: out.g_max,
            n_iter: out.n_iter,
            n_evals: out.n_evals,
            converged: matches!(out.stop, Stop::Gradient | Stop::Reduction),
        })
    }
}

impl Fitted {
    /// Class probabilities, one row of `n_classes` per sample (0 for classes unseen in training).
    pub fn predict_proba(&self, x: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
        check_nonempty("x", x.len())?;
        let d = check_matrix("x", x)?;
        let expected = self.coef.first().map_or(0, Vec::len);
        if d != expected {
            return Err(MetricsError::Invalid(format!("x has {d} features, the probe was fitted on {expected}")));
        }
        Ok(x.iter()
            .map(|xi| {
                let z: Vec<f64> = self
                    .coef
                    .iter()
                    .zip(&self.intercept)
                    .map(|(w, b)| b + w.iter().zip(xi).map(|(a, v)| a * v).sum::<f64>())
                    .collect();
                let lse = log_sum_exp(&z);
                let mut row = vec![0.0; self.n_classes];
                self.classes.iter().zip(&z).for_each(|(&c, &zc)| row[c] = (zc - lse).exp());
                row
            })
            .collect())
    }

    /// Most probable class per sample (the lowest class index on an exact tie, like numpy's argmax).
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<usize>> {
        Ok(self
            .predict_proba(x)?
            .iter()
            .map(|p| p.iter().enumerate().fold(0, |best, (c, &v)| if v > p[best] { c } else { best }))
            .collect())
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a small seeded generator, identical on every target.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound ≥ 1), by rejection so there is no modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % bound;
        loop {
            let v = self.next();
            if v < zone {
                return v % bound;
            }
        }
    }
}

/// Few-shot training subset: per class `max(1, ⌊n_c·fraction⌋)` random indices, sorted ascending.
///
/// The draw is a Fisher–Yates shuffle of each class's indices (classes in ascending order, one
/// SplitMix64 stream seeded with `seed`), so it is the same for a seed on every platform. The counts
/// follow the Derm1M few-shot convention (`⌊·⌋` as Python's `int(n·p)`); the images picked differ
/// from Derm1M's pandas `random_state=42` draw. `fraction` must be in `(0, 1]`.
pub fn few_shot_indices(y: &[usize], fraction: f64, seed: u64) -> Result<Vec<usize>> {
    check_nonempty("y", y.len())?;
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(MetricsError::Invalid(format!("few_shot_indices: fraction = {fraction} must be in (0, 1]")));
    }
    let n_classes = y.iter().max().map_or(0, |&m| m + 1);
    let mut by_class = vec![Vec::new(); n_classes];
    y.iter().enumerate().for_each(|(i, &c)| by_class[c].push(i));
    let mut rng = SplitMix64(seed);
    let mut picked = Vec::new();
    for mut members in by_class.into_iter().filter(|m| !m.is_empty()) {
        let take = ((members.len() as f64 * fraction) as usize).max(1);
        for i in (1..members.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            members.swap(i, j);
        }
        picked.extend_from_slice(&members[..take]);
    }
    picked.sort_unstable();
    Ok(picked)
}
