//! Limited-memory BFGS (two-loop recursion) with a strong-Wolfe line search (Nocedal & Wright,
//! algorithms 3.5, 3.6 and 7.4), used to fit the linear probe.

use std::collections::VecDeque;

/// Sufficient-decrease and curvature constants of the strong Wolfe conditions.
const C1: f64 = 1e-4;
const C2: f64 = 0.9;

pub(super) struct Options {
    pub max_iter: usize,
    /// Stop when max |gradient| ≤ gtol (scipy's `gtol`, sklearn's `tol`).
    pub gtol: f64,
    /// Stop when (f_old − f) ≤ ftol · max(|f_old|, |f|, 1) (scipy's `ftol`).
    pub ftol: f64,
    pub memory: usize,
    /// Function evaluations allowed per line search (sklearn passes `maxls=50`).
    pub max_line_evals: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Gradient,
    Reduction,
    MaxIter,
    LineSearch,
}

pub(super) struct Outcome {
    pub x: Vec<f64>,
    pub f: f64,
    pub g_max: f64,
    pub n_iter: usize,
    pub n_evals: usize,
    pub stop: Stop,
}

struct Trial {
    a: f64,
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    dphi: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// −H·g from the stored (s, y, 1/(s·y)) pairs, oldest first.
fn direction(hist: &VecDeque<(Vec<f64>, Vec<f64>, f64)>, g: &[f64]) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alpha = vec![0.0; hist.len()];
    for (i, (s, y, rho)) in hist.iter().enumerate().rev() {
        alpha[i] = rho * dot(s, &q);
        q.iter_mut().zip(y).for_each(|(qj, yj)| *qj -= alpha[i] * yj);
    }
    if let Some((s, y, _)) = hist.back() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|qj| *qj *= gamma);
    }
    for (i, (s, y, rho)) in hist.iter().enumerate() {
        let beta = rho * dot(y, &q);
        q.iter_mut().zip(s).for_each(|(qj, sj)| *qj += (alpha[i] - beta) * sj);
    }
    q.iter_mut().for_each(|qj| *qj = -*qj);
    q
}

struct LineSearch<'a, F> {
    fg: &'a mut F,
    x: &'a [f64],
    d: &'a [f64],
    f0: f64,
    dphi0: f64,
    evals_left: usize,
    evals: usize,
}

impl<F: FnMut(&[f64], &mut [f64]) -> f64> LineSearch<'_, F> {
    fn eval(&mut self, a: f64) -> Trial {
        self.evals_left -= 1;
        self.evals += 1;
        let x: Vec<f64> = self.x.iter().zip(self.d).map(|(xi, di)| xi + a * di).collect();
        let mut g = vec![0.0; x.len()];
        let f = (self.fg)(&x, &mut g);
        let dphi = dot(&g, self.d);
        Trial { a, x, f, g, dphi }
    }

    fn armijo_fails(&self, t: &Trial) -> bool {
        t.f.is_nan() || t.f > self.f0 + C1 * t.a * self.dphi0
    }

    fn curvature_holds(&self, t: &Trial) -> bool {
        t.dphi.abs() <= -C2 * self.dphi0
    }

    /// Algorithm 3.5: expand the step until the minimum is bracketed, then zoom.
    fn search(&mut self, a_init: f64) -> Option<Trial> {
        let mut prev: Option<Trial> = None;
        let mut a = a_init;
        while self.evals_left > 0 {
            let t = self.eval(a);
            let prev_f = prev.as_ref().map_or(self.f0, |p| p.f);
            if self.armijo_fails(&t) || (prev.is_some() && t.f >= prev_f) {
                return self.zoom(prev, t);
            }
            if self.curvature_holds(&t) {
                return Some(t);
            }
            if t.dphi >= 0.0 {
                let hi = prev.unwrap_or_else(|| self.origin());
                return self.zoom(Some(t), hi);
            }
            a *= 2.0;
            prev = Some(t);
        }
        prev
    }

    /// Algorithm 3.6 with safeguarded cubic interpolation. `lo` = None stands for the start point.
    fn zoom(&mut self, lo: Option<Trial>, hi: Trial) -> Option<Trial> {
        let mut lo = lo;
        let mut hi = hi;
        while self.evals_left > 0 {
            let (a_lo, f_lo, d_lo) = lo.as_ref().map_or((0.0, self.f0, self.dphi0), |t| (t.a, t.f, t.dphi));
            let width = (hi.a - a_lo).abs();
            if width <= 1e-14 * hi.a.abs().max(a_lo.abs()) {
                break;
            }
            let (left, right) = (a_lo.min(hi.a), a_lo.max(hi.a));
            let a = match cubic_min(a_lo, f_lo, d_lo, hi.a, hi.f, hi.dphi) {
                Some(a) if a > left + 0.1 * width && a < right - 0.1 * width => a,
                _ => 0.5 * (a_lo + hi.a),
            };
            let t = self.eval(a);
            if self.armijo_fails(&t) || t.f >= f_lo {
                hi = t;
            } else {
                if self.curvature_holds(&t) {
                    return Some(t);
                }
                if t.dphi * (hi.a - a_lo) >= 0.0 {
                    match lo.take() {
                        Some(old_lo) => hi = old_lo,
                        None => hi = self.origin(),
                    }
                }
                lo = Some(t);
            }
        }
        // Out of evaluations: the best point found so far still lowers f (it passed Armijo).
        lo
    }

    fn origin(&self) -> Trial {
        Trial { a: 0.0, x: self.x.to_vec(), f: self.f0, g: Vec::new(), dphi: self.dphi0 }
    }
}

/// Minimiser of the cubic through (a1, f1, f1') and (a2, f2, f2'); None if it has none.
fn cubic_min(a1: f64, f1: f64, d1: f64, a2: f64, f2: f64, d2: f64) -> Option<f64> {
    let e1 = d1 + d2 - 3.0 * (f1 - f2) / (a1 - a2);
    let disc = e1 * e1 - d1 * d2;
    if disc.is_nan() || disc < 0.0 {
        return None;
    }
    let e2 = (a2 - a1).signum() * disc.sqrt();
    let a = a2 - (a2 - a1) * (d2 + e2 - e1) / (d2 - d1 + 2.0 * e2);
    a.is_finite().then_some(a)
}

/// Minimises `fg` (returns f, writes the gradient) from `x0`.
pub(super) fn minimize(mut fg: impl FnMut(&[f64], &mut [f64]) -> f64, x0: Vec<f64>, opt: &Options) -> Outcome {
    let mut x = x0;
    let mut g = vec![0.0; x.len()];
    let mut f = fg(&x, &mut g);
    let mut n_evals = 1;
    let mut hist: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(opt.memory);
    let mut n_iter = 0;
    let stop = loop {
        if max_abs(&g) <= opt.gtol {
            break Stop::Gradient;
        }
        if n_iter >= opt.max_iter {
            break Stop::MaxIter;
        }
        let mut d = direction(&hist, &g);
        let mut dphi0 = dot(&d, &g);
        if dphi0.is_nan() || dphi0 >= 0.0 {
            hist.clear();
            d = g.iter().map(|v| -v).collect();
            dphi0 = -dot(&g, &g);
        }
        // scipy's first step has length 1 (step 1/‖d‖); later steps try the full quasi-Newton step.
        let a_init = if hist.is_empty() { (1.0 / dot(&d, &d).sqrt()).min(1.0) } else { 1.0 };
        let mut ls = LineSearch { fg: &mut fg, x: &x, d: &d, f0: f, dphi0, evals_left: opt.max_line_evals, evals: 0 };
        let trial = ls.search(a_init);
        n_evals += ls.evals;
        let Some(t) = trial.filter(|t| t.a > 0.0 && t.f <= f && !t.g.is_empty()) else {
            if hist.is_empty() {
                break Stop::LineSearch;
            }
            hist.clear();
            continue;
        };
        n_iter += 1;
        let s: Vec<f64> = t.x.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = t.g.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > f64::EPSILON * dot(&y, &y) {
            if hist.len() == opt.memory {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        let f_old = f;
        (x, f, g) = (t.x, t.f, t.g);
        if max_abs(&g) > opt.gtol && f_old - f <= opt.ftol * f_old.abs().max(f.abs()).max(1.0) {
            break Stop::Reduction;
        }
    };
    Outcome { g_max: max_abs(&g), x, f, n_iter, n_evals, stop }
}
