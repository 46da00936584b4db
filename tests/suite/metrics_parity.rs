//! `dermlip::eval::metrics` against scikit-learn 1.9.1 and open_clip's retrieval definition: the values in
//! tests/fixtures/metrics/*.json, written by tests/reference/make_metric_fixtures.py.
//! Run with `--nocapture` to see each metric's largest deviation.

use std::path::PathBuf;
use std::time::Instant;

use dermlip::eval::metrics::*;
use serde_json::Value;

const TOL: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(f64s).collect()
}

fn max_dev(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length differs");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Tracks the largest deviation per metric and fails if one exceeds its bound.
struct Devs(Vec<(&'static str, f64, f64)>);

impl Devs {
    fn check(&mut self, name: &'static str, ours: f64, reference: f64, tol: f64) {
        let dev = (ours - reference).abs();
        assert!(dev <= tol, "{name}: ours {ours} vs reference {reference} (|Δ| = {dev:e} > {tol:e})");
        match self.0.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => entry.1 = entry.1.max(dev),
            None => self.0.push((name, dev, tol)),
        }
    }
    fn print(&self, title: &str) {
        for (name, dev, tol) in &self.0 {
            eprintln!("{title}: {name:<28} max |Δ| = {dev:.3e} (bound {tol:e})");
        }
    }
}

#[test]
fn classification_metrics_match_sklearn() {
    let fx = fixture("classification");
    let mut devs = Devs(Vec::new());
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["n_classes"].as_u64().unwrap() as usize;
        let (y, p) = (usizes(&case["y_true"]), usizes(&case["y_pred"]));
        let scores = matrix(&case["scores"]);
        devs.check("accuracy", accuracy(&y, &p).unwrap(), case["accuracy"].as_f64().unwrap(), 1e-12);
        devs.check(
            "balanced_accuracy",
            balanced_accuracy(&y, &p).unwrap(),
            case["balanced_accuracy"].as_f64().unwrap(),
            1e-12,
        );
        devs.check("weighted_f1", weighted_f1(&y, &p, k).unwrap(), case["weighted_f1"].as_f64().unwrap(), 1e-12);
        let cm = confusion_matrix(&y, &p, k).unwrap();
        let cm_ref: Vec<Vec<u64>> = case["confusion_matrix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| usizes(r).iter().map(|&v| v as u64).collect())
            .collect();
        assert_eq!(cm, cm_ref, "{name}: confusion matrix");
        for (kk, v) in case["top_k"].as_object().unwrap() {
            let top = top_k_accuracy(&y, &scores, kk.parse().unwrap()).unwrap();
            devs.check("top_k_accuracy", top, v.as_f64().unwrap(), 1e-12);
        }
        let ovr = macro_auroc_ovr(&y, &scores).unwrap();
        devs.check("macro_auroc_ovr", ovr.macro_auroc.unwrap(), case["ovr_macro"].as_f64().unwrap(), 1e-12);
        assert_eq!(ovr.skipped, usizes(&case["ovr_skipped"]), "{name}: skipped classes");
        for (ours, reference) in ovr.per_class.iter().zip(case["ovr_per_class"].as_array().unwrap()) {
            match (ours, reference.as_f64()) {
                (Some(a), Some(b)) => devs.check("auroc_ovr_per_class", *a, b, 1e-12),
                (None, None) => {}
                other => panic!("{name}: per-class AUROC presence differs: {other:?}"),
            }
        }
        let ovo = macro_auroc_ovo(&y, &scores).unwrap();
        devs.check("macro_auroc_ovo", ovo.macro_auroc.unwrap(), case["ovo_macro"].as_f64().unwrap(), 1e-12);
        assert_eq!(ovo.skipped, usizes(&case["ovr_skipped"]), "{name}: ovo skipped classes");
    }
    devs.print("classification");
}

#[test]
fn binary_ranking_metrics_match_sklearn() {
    let fx = fixture("ranking");
    let mut devs = Devs(Vec::new());
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (y, s) = (bools(&case["y_true"]), f64s(&case["scores"]));
        devs.check(
            "roc_auc_binary",
            roc_auc_binary(&y, &s).unwrap().unwrap(),
            case["roc_auc"].as_f64().unwrap(),
            1e-12,
        );
        devs.check(
            "average_precision",
            average_precision(&y, &s).unwrap().unwrap(),
            case["average_precision"].as_f64().unwrap(),
            1e-12,
        );
        let roc = roc_curve(&y, &s).unwrap();
        let (fpr, tpr) = (f64s(&case["roc_fpr"]), f64s(&case["roc_tpr"]));
        assert_eq!(roc.fpr.len(), fpr.len(), "{name}: roc_curve point count");
        devs.check("roc_curve fpr", max_dev(&roc.fpr, &fpr), 0.0, 1e-12);
        devs.check("roc_curve tpr", max_dev(&roc.tpr, &tpr), 0.0, 1e-12);
        assert!(roc.thresholds[0] == f64::INFINITY, "{name}: first threshold is +inf");
        assert_eq!(roc.thresholds[1..], f64s(&case["roc_thresholds_after_first"])[..], "{name}: thresholds");
    }
    devs.print("ranking");
}

#[test]
fn recall_at_k_matches_reference_and_open_clip_without_ties() {
    let fx = fixture("retrieval");
    let ks = usizes(&fx["ks"]);
    let tied = &fx["tied"];
    assert!(tied["ties_with_diagonal"].as_u64().unwrap() > 0, "the tied case must tie with the diagonal");
    let sim = matrix(&tied["similarity"]);
    assert_eq!(recall_at_k(&sim, &ks).unwrap(), f64s(&tied["image_to_text"]));
    assert_eq!(recall_at_k(&transpose(&sim).unwrap(), &ks).unwrap(), f64s(&tied["text_to_image"]));

    let free = &fx["tie_free"];
    let sim = matrix(&free["similarity"]);
    let i2t = recall_at_k(&sim, &ks).unwrap();
    let t2i = recall_at_k(&transpose(&sim).unwrap(), &ks).unwrap();
    assert_eq!(i2t, f64s(&free["image_to_text"]));
    assert_eq!(t2i, f64s(&free["text_to_image"]));
    assert_eq!(i2t, f64s(&free["open_clip_image_to_text"]), "open_clip get_clip_metrics, image→text");
    assert_eq!(t2i, f64s(&free["open_clip_text_to_image"]), "open_clip get_clip_metrics, text→image");
    eprintln!("retrieval: R@{ks:?} i→t {i2t:?} t→i {t2i:?} (exact match, ties and open_clip)");
}

#[test]
fn logistic_regression_matches_sklearn() {
    let fx = fixture("logreg");
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = case["n_classes"].as_u64().unwrap() as usize;
        let c = case["c"].as_f64().unwrap();
        let (x, y, xt) = (matrix(&case["x_train"]), usizes(&case["y_train"]), matrix(&case["x_test"]));
        let lr = LogisticRegression { c, max_iter: 10_000, tol: case["tol"].as_f64().unwrap() };
        let start = Instant::now();
        let fit = lr.fit(&x, &y, k).unwrap();
        let seconds = start.elapsed().as_secs_f64();
        assert!(fit.converged, "{name}: not converged after {} iterations", fit.n_iter);

        let proba = fit.predict_proba(&xt).unwrap();
        let proba_dev = max_dev(&proba.concat(), &matrix(&case["predict_proba_test"]).concat());
        assert!(proba_dev <= TOL, "{name}: predict_proba max |Δ| = {proba_dev:e}");
        assert_eq!(fit.predict(&xt).unwrap(), usizes(&case["predict_test"]), "{name}: predict");
        let objective = case["objective"].as_f64().unwrap();
        let obj_rel = (fit.objective - objective).abs() / objective;
        assert!(obj_rel <= 1e-9, "{name}: objective {} vs sklearn {objective}", fit.objective);

        // sklearn stops at max|g| = g_sk > 0, so its solution is only that close to the optimum: the
        // scaled objective is (1/(C·n))-strongly convex, hence ‖w_sk − w*‖₂ ≤ ‖g‖₂·C·n ≤ √p·g_sk·C·n.
        // Ours is converged further; twice that bound covers both.
        let n = x.len() as f64;
        let p = (k.max(2) * (x[0].len() + 1)) as f64;
        let coef_bound = 2.0 * p.sqrt() * case["sklearn_max_abs_grad"].as_f64().unwrap() * c * n;
        let (coef, intercept) = if k == 2 {
            let w: Vec<f64> = fit.coef[1].iter().zip(&fit.coef[0]).map(|(a, b)| a - b).collect();
            (w, vec![fit.intercept[1] - fit.intercept[0]])
        } else {
            (fit.coef.concat(), fit.intercept.clone())
        };
        let coef_dev = max_dev(&coef, &matrix(&case["coef"]).concat());
        let icpt_dev = max_dev(&intercept, &f64s(&case["intercept"]));
        assert!(coef_dev <= coef_bound, "{name}: coef max |Δ| = {coef_dev:e} > {coef_bound:e}");
        assert!(icpt_dev <= coef_bound, "{name}: intercept max |Δ| = {icpt_dev:e} > {coef_bound:e}");
        // At sklearn's default tol both solvers stop far from the optimum; matching there means the
        // L-BFGS iterates themselves follow scipy's (same first step, memory 10, full steps accepted).
        let loose = &case["default_tol"];
        let lr_loose = LogisticRegression {
            c,
            max_iter: loose["max_iter"].as_u64().unwrap() as usize,
            tol: loose["tol"].as_f64().unwrap(),
        };
        let fit_loose = lr_loose.fit(&x, &y, k).unwrap();
        let loose_dev =
            max_dev(&fit_loose.predict_proba(&xt).unwrap().concat(), &matrix(&loose["predict_proba_test"]).concat());
        assert!(loose_dev <= TOL, "{name}: tol 1e-4 predict_proba max |Δ| = {loose_dev:e}");
        assert_eq!(fit_loose.n_iter as u64, loose["sklearn_n_iter"].as_u64().unwrap(), "{name}: tol 1e-4 iterations");
        eprintln!(
            "logreg {name} at tol 1e-4: predict_proba |Δ| {loose_dev:.2e}, {} iterations like sklearn",
            fit_loose.n_iter
        );
        eprintln!(
            "logreg {name}: predict_proba |Δ| {proba_dev:.2e}, coef |Δ| {coef_dev:.2e}, intercept |Δ| \
             {icpt_dev:.2e} (bound {coef_bound:.2e}), objective rel {obj_rel:.2e}; {} iterations, {} evaluations, \
             max|g| {:.1e}, {:.1} ms (sklearn: {} iterations, {:.1} ms)",
            fit.n_iter,
            fit.n_evals,
            fit.max_abs_grad,
            seconds * 1e3,
            case["sklearn_n_iter"],
            case["sklearn_fit_seconds"].as_f64().unwrap() * 1e3,
        );
    }
}

#[test]
fn few_shot_counts_follow_the_protocol() {
    let fx = fixture("few_shot");
    let y = usizes(&fx["y"]);
    for case in fx["cases"].as_array().unwrap() {
        let fraction = case["fraction"].as_f64().unwrap();
        let picked = few_shot_indices(&y, fraction, 42).unwrap();
        assert!(picked.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        let mut counts = vec![0usize; 5];
        picked.iter().for_each(|&i| counts[y[i]] += 1);
        assert_eq!(counts, usizes(&case["per_class_count"]), "fraction {fraction}");
        assert_eq!(picked, few_shot_indices(&y, fraction, 42).unwrap(), "same seed, same subset");
    }
    assert_ne!(few_shot_indices(&y, 0.1, 1).unwrap(), few_shot_indices(&y, 0.1, 2).unwrap(), "seed matters");
}

#[test]
fn undefined_cases_are_reported_not_guessed() {
    let one_class = [true, true, true];
    assert_eq!(roc_auc_binary(&one_class, &[0.1, 0.2, 0.3]).unwrap(), None);
    assert_eq!(average_precision(&[false, false], &[0.1, 0.2]).unwrap(), None);
    assert!(roc_curve(&one_class, &[0.1, 0.2, 0.3]).is_err());
    let ovr = macro_auroc_ovr(&[0, 0], &[vec![0.9, 0.1], vec![0.8, 0.2]]).unwrap();
    assert_eq!((ovr.macro_auroc, ovr.skipped), (None, vec![0, 1]));
}

fn err<T: std::fmt::Debug>(r: Result<T, MetricsError>) -> String {
    r.expect_err("bad input was accepted").to_string()
}

#[test]
fn bad_input_gives_clear_errors() {
    assert!(err(accuracy(&[0, 1], &[0])).contains("y_pred has 1 entries but 2"));
    assert!(err(accuracy(&[], &[])).contains("y_true is empty"));
    assert!(err(confusion_matrix(&[0, 3], &[0, 1], 3)).contains("y_true[1] = 3"));
    assert!(err(weighted_f1(&[0, 1], &[0, 5], 2)).contains("y_pred[1] = 5"));
    assert!(err(roc_auc_binary(&[true, false], &[0.5, f64::NAN])).contains("scores at index 1 is NaN"));
    assert!(err(top_k_accuracy(&[0, 1], &[vec![0.1, 0.2], vec![0.3]], 1)).contains("ragged"));
    assert!(err(top_k_accuracy(&[0, 2], &[vec![0.1, 0.2], vec![0.3, 0.1]], 1)).contains("y_true[1] = 2"));
    assert!(err(top_k_accuracy(&[0], &[vec![0.1, 0.2]], 0)).contains("k must be"));
    assert!(err(macro_auroc_ovr(&[0, 1], &[vec![0.1, f64::INFINITY], vec![0.3, 0.1]])).contains("row 0, column 1"));
    assert!(err(recall_at_k(&[vec![0.1, 0.2]], &[1])).contains("square"));
    assert!(err(recall_at_k(&[vec![1.0]], &[0])).contains("k = 0"));
    assert!(err(few_shot_indices(&[0, 1], 0.0, 1)).contains("fraction"));

    let x = vec![vec![0.0, 1.0], vec![1.0, 0.0], vec![1.0, 1.0]];
    let lr = LogisticRegression::default();
    assert!(err(lr.fit(&x, &[0, 0, 0], 2)).contains("at least 2"));
    assert!(err(lr.fit(&x, &[0, 1], 2)).contains("y has 2 entries but 3"));
    assert!(err(lr.fit(&x, &[0, 1, 2], 2)).contains("y[2] = 2"));
    assert!(err(LogisticRegression { c: 0.0, ..lr }.fit(&x, &[0, 1, 1], 2)).contains("c = 0"));
    let mut nan = x.clone();
    nan[2][0] = f64::NAN;
    assert!(err(lr.fit(&nan, &[0, 1, 1], 2)).contains("x at row 2, column 0 is NaN"));
    let fit = lr.fit(&x, &[0, 1, 1], 3).unwrap();
    assert_eq!(fit.classes, vec![0, 1]);
    assert_eq!(fit.predict_proba(&x).unwrap()[0][2], 0.0, "a class unseen in training has probability 0");
    assert!(err(fit.predict_proba(&[vec![1.0]])).contains("1 features, the probe was fitted on 2"));
}

#[test]
fn derm1m_cost_convention() {
    assert_eq!(LogisticRegression::derm1m(512, 7).c, 35.84);
    assert_eq!(LogisticRegression::derm1m(768, 7).max_iter, 1000);
}
