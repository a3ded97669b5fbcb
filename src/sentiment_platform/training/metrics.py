"""Macro-recall, macro-F1 and accuracy in plain numpy, so `evaluate` needs no training extras."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def scores(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> dict[str, float]:
    """Scores in percent, macro-averaged over `labels` (the task's classes)."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError(
            f"need as many predictions as gold labels (got {len(predicted)}/{len(gold)})"
        )
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
