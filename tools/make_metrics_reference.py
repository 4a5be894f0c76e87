#!/usr/bin/env python3
"""Reference values for tests/test_metrics.cpp, computed once with SciPy / scikit-learn.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scipy scikit-learn
    /tmp/venv/bin/python tools/make_metrics_reference.py

Prints C++ constants to paste into the test: Kendall tau-b (scipy.stats.kendalltau,
variant 'b', the default) on lists with ties on either or both sides, and ROC AUC
(sklearn.metrics.roc_auc_score) with tied scores. The inputs here and in the test must
stay identical.
"""
import math

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


def main():
    print(f"// scipy {scipy.__version__}, scikit-learn {sklearn.__version__}")
    for x, y in KENDALL_CASES:
        tau = float(kendalltau(x, y)[0])
        print(f"kendall tau-b {x} {y}: {tau!r}")
    labels = [1 if g >= 2.5 else 0 for g in AUC_GOLD]
    print(f"auc labels {labels}: {float(roc_auc_score(labels, AUC_PRED))!r}")
    const = kendalltau([2, 2, 2], [1, 2, 3])
    print(f"kendall constant x: {float(const[0])!r} (nan expected: {math.isnan(const[0])})")


if __name__ == "__main__":
    main()
