#!/usr/bin/env python3
"""Reference values for tests/test_metrics.cpp, computed once with SciPy / scikit-learn.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scipy scikit-learn
    /tmp/venv/bin/python tools/make_metrics_reference.py

Prints C++ constants to paste into the test: Kendall tau-b (scipy.stats.kendalltau,
variant 'b', the default) on lists with ties on either or both sides, and ROC AUC
(sklearn.metrics.roc_auc_score) with tied scores. The inputs here and in the test must
stay identical. Also scores tests/fixtures/losses/sample_predictions.jsonl (a synthetic
file: 8 images of 3-6 items plus a single-item image and one null prediction).
"""
import json
import math
import os

import numpy as np
import scipy
import sklearn
from scipy.stats import kendalltau
from sklearn.metrics import roc_auc_score

KENDALL_CASES = [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),                      # ties in y only
    ([3, 3, 1, 2, 2, 5], [1.5, 2, 2, 0.5, 2, 3]),            # ties in both
    ([1, 1, 2, 2], [1, 2, 1, 2]),                            # balanced: tau = 0
    ([2.5, 4, 1, 3.6667, 4], [2.9, 3.1, 1.2, 3.1, 3.8]),     # mean-rating style
    ([4.2, 1.0, 3.3, 2.0, 4.9, 2.0, 1.0], [3.0, 1.5, 3.0, 1.5, 4.0, 2.2, 1.5]),
]

AUC_GOLD = [1, 3, 2.5, 2, 4, 1.5, 3, 2.4, 4.5, 1.2]
AUC_PRED = [1.2, 3.0, 2.0, 2.0, 3.0, 2.5, 1.2, 3.0, 4.1, 2.5]


SAMPLE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "losses", "sample_predictions.jsonl")


def sample_file():
    """Kendall tau-b (mean over images with >= 2 items where defined), AUC and MAE of
    the sample predictions file (null predictions skipped)."""
    rows = [json.loads(line) for line in open(SAMPLE) if line.strip()]
    rows = [r for r in rows if r["prediction"] is not None]
    gold = np.array([r["gold_rating"] for r in rows])
    pred = np.array([r["prediction"] for r in rows])
    images = {}
    for r in rows:
        images.setdefault(r["image_id"], []).append(r)
    taus = [float(kendalltau([r["gold_rating"] for r in v], [r["prediction"] for r in v])[0])
            for v in images.values() if len(v) >= 2]
    taus = [t for t in taus if not math.isnan(t)]
    print(f"sample file: {len(rows)} rows, kendall_tau {float(np.mean(taus))!r} over {len(taus)}, "
          f"auc {float(roc_auc_score(gold >= 2.5, pred))!r}, mae {float(np.mean(np.abs(pred - gold)))!r}")


def main():
    print(f"// scipy {scipy.__version__}, scikit-learn {sklearn.__version__}")
    for x, y in KENDALL_CASES:
        tau = float(kendalltau(x, y)[0])
        print(f"kendall tau-b {x} {y}: {tau!r}")
    labels = [1 if g >= 2.5 else 0 for g in AUC_GOLD]
    print(f"auc labels {labels}: {float(roc_auc_score(labels, AUC_PRED))!r}")
    const = kendalltau([2, 2, 2], [1, 2, 3])
    print(f"kendall constant x: {float(const[0])!r} (nan expected: {math.isnan(const[0])})")
    sample_file()


if __name__ == "__main__":
    main()
