"""Quality's figures from a confusion matrix, and its macro-recall interval (issue 30)."""

from __future__ import annotations

import numpy as np

from sentiment_platform.services.trust.quality import figures, macro_recall_interval


def test_figures_of_a_matrix() -> None:
    matrix = np.array([[3, 1, 0], [1, 2, 1], [0, 0, 2]])
    answer = figures(matrix)
    assert answer["compared"] == 10
    assert answer["accuracy"] == 70.0
    assert answer["macro_recall"] == 75.0
    assert answer["share_true"] == {"negative": 40.0, "neutral": 40.0, "positive": 20.0}
    assert answer["share_predicted"] == {"negative": 40.0, "neutral": 30.0, "positive": 30.0}
    assert answer["confusion"]["neutral"] == {"negative": 1, "neutral": 2, "positive": 1}


def test_a_class_without_labels_is_left_out_of_the_macro_average() -> None:
    matrix = np.array([[4, 0, 0], [0, 0, 0], [1, 0, 1]])  # no neutral label
    answer = figures(matrix)
    assert answer["macro_recall"] == 75.0  # (4/4 + 1/2) / 2, not / 3
    assert answer["share_true"]["neutral"] == 0.0


def test_the_interval_does_not_collapse_on_a_few_perfect_labels() -> None:
    """Five labels of each class, all right: a bootstrap would give [100, 100]."""
    answer = figures(np.diag([5, 5, 5]))
    low, high = answer["macro_recall_interval"]
    assert answer["macro_recall"] == high == 100.0
    assert 70 < low < 95


def test_the_interval_is_the_same_for_the_same_labels() -> None:
    hits, labels = np.array([30.0, 20.0, 9.0]), np.array([40.0, 35.0, 12.0])
    assert macro_recall_interval(hits, labels) == macro_recall_interval(hits, labels)


def test_the_interval_covers_the_true_macro_recall() -> None:
    """Random labelled samples of a model with known per-class recall: the 95 % interval
    holds the truth in about 95 % of them (here at least 90 %), rare classes included."""
    rng = np.random.default_rng(7)
    prior, recall = np.array([0.1, 0.6, 0.3]), np.array([0.9, 0.8, 0.95])
    covered = 0
    repetitions = 200
    for _ in range(repetitions):
        labels = rng.multinomial(80, prior).astype(float)
        hits = rng.binomial(labels.astype(int), recall).astype(float)
        present = labels > 0
        low, high = macro_recall_interval(hits[present], labels[present])
        covered += low <= recall[present].mean() <= high
    assert covered / repetitions >= 0.9
