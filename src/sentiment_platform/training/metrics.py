"""Macro-recall, macro-F1, accuracy and class shares in plain numpy, so `evaluate` needs no
training extras."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(gold: Sequence[str], predicted: Sequence[str]) -> None:
    if len(gold) != len(predicted) or not gold:
        raise ValueError(
            f"need as many predictions as gold labels (got {len(predicted)}/{len(gold)})"
        )


def scores(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> dict[str, float]:
    """Scores in percent, macro-averaged over `labels` (the task's classes)."""
    _check(gold, predicted)
    g, p = np.asarray(gold), np.asarray(predicted)
    recalls, f1s = [], []
    for label in labels:
        true_pos = float(np.sum((g == label) & (p == label)))
        actual, claimed = float(np.sum(g == label)), float(np.sum(p == label))
        recall = true_pos / actual if actual else 0.0
        precision = true_pos / claimed if claimed else 0.0
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return {
        "macro_recall": round(100 * float(np.mean(recalls)), 2),
        "macro_f1": round(100 * float(np.mean(f1s)), 2),
        "accuracy": round(100 * float(np.mean(g == p)), 2),
    }


def shares(values: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Each label's share of `values` in percent (classify-and-count, as the aggregator does)."""
    if not values:
        raise ValueError("no values to count")
    return {label: 100 * sum(v == label for v in values) / len(values) for label in labels}


def max_share_error(true: dict[str, float], estimated: dict[str, float]) -> float:
    """The largest absolute difference between two share tables, in points."""
    return max(abs(estimated[label] - share) for label, share in true.items())


def share_scores(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> dict[str, dict[str, float] | float]:
    """True and predicted share of each label (percent), and the largest error (points)."""
    _check(gold, predicted)
    true, counted = shares(gold, labels), shares(predicted, labels)
    return {
        "share_true": {k: round(v, 2) for k, v in true.items()},
        "share_predicted": {k: round(v, 2) for k, v in counted.items()},
        "max_share_error": round(max_share_error(true, counted), 2),
    }
