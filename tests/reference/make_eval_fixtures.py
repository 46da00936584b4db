"""scikit-learn's metrics on the DermFM-Zero per-image zero-shot predictions of DermLIP ViT-B/16
(tests/fixtures/derm1m-reference/*.csv, copied unmodified from the shared data folder):
tests/fixtures/derm1m-reference/expected_metrics.json.

    ~/.cache/dermlip-venv/bin/pip install pandas scikit-learn
    ~/.cache/dermlip-venv/bin/python tests/reference/make_eval_fixtures.py
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score,
                             top_k_accuracy_score)

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "derm1m-reference"


def main():
    out = {"sklearn_version": sklearn.__version__}
    for f in sorted(DIR.glob("*.csv")):
        d = pd.read_csv(f)
        probs = d[[c for c in d.columns if c.startswith("probability_class_")]].to_numpy(np.float64)
        y, pred = d.true_label.to_numpy(), probs.argmax(1)
        n = probs.shape[1]
        out[f.name] = {
            "n": len(d), "n_classes": n,
            "accuracy": accuracy_score(y, pred),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
            "weighted_f1": f1_score(y, pred, average="weighted"),
            "macro_auroc_ovr": roc_auc_score(y, probs, multi_class="ovr", labels=list(range(n))),
            "top2_accuracy": top_k_accuracy_score(y, probs, k=2, labels=list(range(n))),
            "confusion_matrix": confusion_matrix(y, pred, labels=list(range(n))).tolist(),
        }
    (DIR / "expected_metrics.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: (v if isinstance(v, str) else {m: v[m] for m in ("accuracy", "macro_auroc_ovr")}) for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
