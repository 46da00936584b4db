"""scikit-learn (and open_clip-style torch) reference values for `dermlip::metrics`:
tests/fixtures/metrics/{classification,ranking,retrieval,logreg,few_shot}.json.

    ~/.cache/dermlip-venv/bin/pip install scikit-learn
    ~/.cache/dermlip-venv/bin/python tests/reference/make_metric_fixtures.py

Every case is seeded random data. Scores are rounded so that ties occur. Where scikit-learn raises
(a class absent from y_true for one-vs-rest AUROC), the value is the mean of sklearn's per-class
binary roc_auc_score over the classes it is defined for: the documented skip behaviour of the Rust code.
"""
import json
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests" / "fixtures" / "metrics"


def fl(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def mat(a):
    return [fl(r) for r in np.asarray(a, dtype=np.float64)]


def ints(a):
    return [int(v) for v in np.asarray(a).ravel()]


def binary_case(name, rng, n, pos_rate, decimals):
    y = rng.random(n) < pos_rate
    y[0], y[1] = True, False  # both classes present
    s = np.round(rng.normal(size=n) + 0.8 * y, decimals)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    assert np.isinf(thr[0])
    return {
        "name": name,
        "y_true": [bool(v) for v in y],
        "scores": fl(s),
        "roc_auc": float(skm.roc_auc_score(y, s)),
        "average_precision": float(skm.average_precision_score(y, s)),
        "roc_fpr": fl(fpr),
        "roc_tpr": fl(tpr),
        # thresholds[0] is +inf in sklearn >= 1.3; JSON has no inf, so it is left out here.
        "roc_thresholds_after_first": fl(thr[1:]),
    }


def ovr_with_skip(y, p, k):
    per = []
    for c in range(k):
        yc = y == c
        per.append(float(skm.roc_auc_score(yc, p[:, c])) if 0 < yc.sum() < len(y) else None)
    vals = [v for v in per if v is not None]
    return per, float(np.mean(vals))


def ovo_with_skip(y, p, k):
    pair = []
    for a in range(k):
        for b in range(a + 1, k):
            m = (y == a) | (y == b)
            if (y == a).sum() == 0 or (y == b).sum() == 0:
                continue
            ab = skm.roc_auc_score(y[m] == a, p[m, a])
            ba = skm.roc_auc_score(y[m] == b, p[m, b])
            pair.append((ab + ba) / 2)
    return float(np.mean(pair))


def multiclass_case(name, rng, n, k, class_p, absent=None, integer_scores=False):
    y = rng.choice(k, size=n, p=class_p)
    if absent is not None:
        y[y == absent] = (absent + 1) % k
    if integer_scores:
        logits = rng.integers(0, 3, size=(n, k)).astype(np.float64)
    else:
        logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = np.round(p / p.sum(1, keepdims=True), 2)  # rounding makes ties; rows need not sum to 1
    y_pred = np.where(rng.random(n) < 0.7, np.argmax(p, 1), rng.integers(0, k, size=n))
    labels = np.arange(k)
    case = {
        "name": name,
        "n_classes": k,
        "y_true": ints(y),
        "y_pred": ints(y_pred),
        "scores": mat(p),
        "accuracy": float(skm.accuracy_score(y, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, y_pred)),
        "confusion_matrix": [ints(r) for r in skm.confusion_matrix(y, y_pred, labels=labels)],
        "weighted_f1": float(skm.f1_score(y, y_pred, labels=labels, average="weighted", zero_division=0)),
        "top_k": {str(t): float(skm.top_k_accuracy_score(y, p, k=t, labels=labels)) for t in (1, 2, 3)},
    }
    per, macro = ovr_with_skip(y, p, k)
    case["ovr_per_class"] = per
    case["ovr_macro"] = macro
    case["ovr_skipped"] = [c for c in range(k) if per[c] is None]
    case["ovo_macro"] = ovo_with_skip(y, p, k)
    if absent is None:
        # Cross-check the skip-aware helpers against sklearn's own multiclass paths where sklearn
        # accepts the input (it requires rows summing to 1, so renormalise a copy).
        q = p / p.sum(1, keepdims=True)
        assert abs(ovr_with_skip(y, q, k)[1] - skm.roc_auc_score(y, q, multi_class="ovr", average="macro")) < 1e-12
        assert abs(ovo_with_skip(y, q, k) - skm.roc_auc_score(y, q, multi_class="ovo", average="macro")) < 1e-12
    return case


def classification(rng):
    return {
        "sklearn_version": sklearn.__version__,
        "cases": [
            multiclass_case("balanced5", rng, 300, 5, [0.2] * 5),
            multiclass_case("imbalanced4", rng, 250, 4, [0.6, 0.25, 0.1, 0.05]),
            multiclass_case("absent3of5", rng, 200, 5, [0.3, 0.2, 0.2, 0.1, 0.2], absent=3),
            multiclass_case("integer_ties6", rng, 150, 6, [1 / 6] * 6, integer_scores=True),
        ],
    }


def ranking(rng):
    return {
        "sklearn_version": sklearn.__version__,
        "cases": [
            binary_case("ties_2dp", rng, 200, 0.3, 2),
            binary_case("heavy_ties_1dp", rng, 60, 0.5, 0),
            binary_case("imbalanced_5pct", rng, 300, 0.05, 3),
        ],
    }


def recall_strict(sim, ks):
    diag = np.diag(sim)[:, None]
    rank = (sim > diag).sum(1)
    return [float(np.mean(rank < k)) for k in ks]


def recall_open_clip(sim, ks):
    # open_clip_train/train.py get_clip_metrics, verbatim logic.
    logits = torch.from_numpy(sim)
    ground_truth = torch.arange(len(sim)).view(-1, 1)
    ranking = torch.argsort(logits, descending=True)
    preds = torch.where(ranking == ground_truth)[1].numpy()
    return [float(np.mean(preds < k)) for k in ks]


def retrieval(rng):
    ks = [1, 5, 10]
    n, d = 40, 12
    img = rng.normal(size=(n, d))
    txt = img + 1.2 * rng.normal(size=(n, d))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    exact = img @ txt.T
    tied = np.round(exact, 1)  # coarse rounding: many ties, including with the diagonal
    # Tie-free matrix: every row's values distinct (and every column's).
    assert all(len(set(r)) == n for r in exact) and all(len(set(c)) == n for c in exact.T)
    ties_with_diag = int(sum((tied[i] == tied[i, i]).sum() - 1 for i in range(n)))
    return {
        "ks": ks,
        "definition": "rank_i = #{j : s[i][j] > s[i][i]}; R@k = mean(rank_i < k)",
        "tied": {
            "similarity": mat(tied),
            "ties_with_diagonal": ties_with_diag,
            "image_to_text": recall_strict(tied, ks),
            "text_to_image": recall_strict(tied.T.copy(), ks),
        },
        "tie_free": {
            "similarity": mat(exact),
            "image_to_text": recall_strict(exact, ks),
            "text_to_image": recall_strict(exact.T.copy(), ks),
            "open_clip_image_to_text": recall_open_clip(exact, ks),
            "open_clip_text_to_image": recall_open_clip(exact.T.copy(), ks),
        },
    }


def sklearn_objective(clf, x, y, c, classes):
    """C * sum_i CE_i + 0.5 * ||coef||^2, as sklearn defines its objective."""
    p = clf.predict_proba(x)
    idx = np.searchsorted(classes, y)
    ce = -np.log(p[np.arange(len(y)), idx]).sum()
    return float(c * ce + 0.5 * (clf.coef_ ** 2).sum())


def max_abs_grad(clf, x, y, c, classes):
    """Gradient of sklearn's internal objective (mean CE + ||W||^2 / (2 C n)) at sklearn's solution."""
    n = len(y)
    p = clf.predict_proba(x)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    r = (p - onehot) / n
    if len(classes) == 2:
        g_w = (r[:, 1] @ x) + clf.coef_[0] / (c * n)
        g_b = r[:, 1].sum()
        return float(max(np.abs(g_w).max(), abs(g_b)))
    g_w = r.T @ x + clf.coef_ / (c * n)
    g_b = r.sum(0)
    return float(max(np.abs(g_w).max(), np.abs(g_b).max()))


def logreg_case(name, rng, n_train, n_test, d, k, tol):
    means = rng.normal(scale=1.0, size=(k, d))
    def draw(n):
        y = np.arange(n) % k
        rng.shuffle(y)
        x = means[y] + rng.normal(scale=1.5, size=(n, d))
        return x, y
    x, y = draw(n_train)
    xt, yt = draw(n_test)
    c = d * k / 100.0
    clf = LogisticRegression(C=c, solver="lbfgs", tol=tol, max_iter=100000)
    t0 = time.perf_counter()
    clf.fit(x, y)
    dt = time.perf_counter() - t0
    classes = clf.classes_
    # sklearn's default tol stops well before the optimum; record that too, to compare solver paths.
    loose = LogisticRegression(C=c, solver="lbfgs", tol=1e-4).fit(x, y)
    return {
        "name": name,
        "n_classes": k,
        "c": c,
        "tol": tol,
        "x_train": mat(x),
        "y_train": ints(y),
        "x_test": mat(xt),
        "coef": mat(clf.coef_),
        "intercept": fl(clf.intercept_),
        "predict_proba_test": mat(clf.predict_proba(xt)),
        "predict_test": ints(clf.predict(xt)),
        "objective": sklearn_objective(clf, x, y, c, classes),
        "sklearn_n_iter": int(clf.n_iter_[0]),
        "sklearn_max_abs_grad": max_abs_grad(clf, x, y, c, classes),
        "sklearn_fit_seconds": dt,
        "default_tol": {
            "tol": 1e-4,
            "max_iter": 100,
            "sklearn_n_iter": int(loose.n_iter_[0]),
            "predict_proba_test": mat(loose.predict_proba(xt)),
        },
    }


def logreg(rng):
    return {
        "sklearn_version": sklearn.__version__,
        "estimator": "LogisticRegression(C=c, solver='lbfgs', fit_intercept=True, tol=tol, max_iter=100000)",
        "cases": [
            logreg_case("multinomial_120x16_k4", rng, 120, 60, 16, 4, 1e-10),
            logreg_case("binary_80x16", rng, 80, 40, 16, 2, 1e-10),
        ],
    }


def few_shot(rng):
    y = rng.choice(5, size=157, p=[0.5, 0.3, 0.1, 0.07, 0.03])
    cases = []
    for frac in (0.01, 0.1, 0.5, 1.0):
        counts = [max(1, int(int((y == c).sum()) * frac)) if (y == c).any() else 0 for c in range(5)]
        cases.append({"fraction": frac, "per_class_count": counts})
    return {"y": ints(y), "cases": cases}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250611)
    for name, make in [("classification", classification), ("ranking", ranking),
                       ("retrieval", retrieval), ("logreg", logreg), ("few_shot", few_shot)]:
        data = make(rng)
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        print(f"{path.relative_to(REPO)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
