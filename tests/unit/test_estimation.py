"""Share estimators from the model's counts plus random labels (`services/analysis/estimation.py`,
`estimation_acc.py`).

Synthetic feeds with a known confusion and known true shares: the window is large, so its
counts are exactly what the confusion makes of the true shares, and each seed draws its own
uniform sample of labelled posts. Over many seeds each estimator must centre on the truth
and its 95 % interval must hold it about 95 % of the time.
"""

from __future__ import annotations

import numpy as np
import pytest

from sentiment_platform.services.analysis import estimation as est
from sentiment_platform.services.analysis import estimation_acc as acc

K = 3
TRUE = np.array([0.45, 0.35, 0.20])  # a shifted feed: far more negative than training
# P(prediction j | label i): the model under-calls the first class, as on a shifted feed.
CONFUSION = np.array([[0.62, 0.30, 0.08], [0.15, 0.72, 0.13], [0.05, 0.20, 0.75]])
WINDOW = 1_000_000
SEEDS = 400


def _counts(true: np.ndarray = TRUE, confusion: np.ndarray = CONFUSION) -> np.ndarray:
    """What the model counts over the window: every post predicted, no sampling noise."""
    return WINDOW * (confusion.T @ true)


def _samples(
    n: int, seeds: int = SEEDS, true: np.ndarray = TRUE, confusion: np.ndarray = CONFUSION
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions), each seeds×n: a uniform draw of labelled posts per seed."""
    rng = np.random.default_rng(n)
    labels = rng.choice(K, size=(seeds, n), p=true)
    below = rng.random((seeds, n))[..., None] > np.cumsum(confusion, axis=1)[labels]
    return labels, below.sum(axis=-1)


def _run(method: str, n: int, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    """(shares seeds×K, intervals seeds×K×2) of an estimator over every seed's sample."""
    labels, predictions = _samples(n, seeds=SEEDS if method != "acc" else 250)
    results = []
    for y, f in zip(labels, predictions, strict=True):
        confusion = est.confusion_counts(y, f, K)
        if method == "difference":
            results.append(est.difference_estimate(_counts(), confusion, n_min=n, **kwargs))
        elif method == "stratified":
            results.append(est.stratified_estimate(_counts(), confusion, n_min=n, **kwargs))
        elif method == "acc":
            results.append(acc.acc_estimate(_counts(), confusion, n_min=n, draws=200, **kwargs))
        else:
            results.append(est.sample_estimate(confusion, n_min=n))
    assert all(r.enough and r.intervals is not None for r in results)
    return np.array([r.shares for r in results]), np.array([r.intervals for r in results])


@pytest.mark.parametrize(
    ("method", "n", "bias"),
    [
        ("difference", 300, 0.004),
        ("stratified", 300, 0.004),
        ("sample", 300, 0.004),
        ("acc", 500, 0.01),
    ],
)
def test_centres_on_the_truth_and_its_interval_holds_it(method: str, n: int, bias: float) -> None:
    shares, intervals = _run(method, n)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert np.abs(shares.mean(axis=0) - TRUE).max() < bias
    covered = (intervals[..., 0] <= TRUE) & (intervals[..., 1] >= TRUE)
    assert covered.mean(axis=0).min() >= 0.91, covered.mean(axis=0)
    assert covered.mean(axis=0).max() <= 0.99, covered.mean(axis=0)


def test_counting_alone_is_off_on_this_feed() -> None:
    """The point of the labels: the count carries the model's bias and cannot see it."""
    counted = est.counted_estimate(_counts())
    assert counted.shares is not None and counted.intervals is None
    assert abs(counted.shares[0] - TRUE[0]) > 0.1


def test_stratified_is_tighter_than_the_difference_estimator() -> None:
    """Both unbiased; one correction per predicted class leaves less noise than one overall."""
    stratified, _ = _run("stratified", 300)
    difference, _ = _run("difference", 300)
    assert (stratified.std(axis=0) < difference.std(axis=0)).all()


def test_the_difference_estimator_from_counts_is_the_mean_of_its_rectifiers() -> None:
    """The aggregate algebra matches the estimator written over the labelled posts."""
    labels, predictions = _samples(250, seeds=1)
    y, f = labels[0], predictions[0]
    result = est.difference_estimate(_counts(), est.confusion_counts(y, f, K), n_min=200)
    rectifier = np.eye(K)[y] - np.eye(K)[f]
    share = _counts() / WINDOW + rectifier.mean(axis=0)
    half = 1.959964 * rectifier.std(axis=0, ddof=1) / np.sqrt(250)
    np.testing.assert_allclose(result.shares, share)
    np.testing.assert_allclose(np.array(result.intervals), np.c_[share - half, share + half])


def test_the_stratified_estimate_splits_each_predicted_class_by_its_labels() -> None:
    confusion = np.array([[40, 10, 0], [20, 60, 20], [0, 10, 40]])  # [label, prediction]
    counts = np.array([300, 500, 200])
    result = est.stratified_estimate(counts, confusion, n_min=200)
    # Predicted negative: 40 of 60 negative, 20 neutral; neutral: 10/80, 60/80, 10/80; ...
    expected = 0.3 * np.array([40, 20, 0]) / 60 + 0.5 * np.array([10, 60, 10]) / 80
    expected += 0.2 * np.array([0, 20, 40]) / 60
    np.testing.assert_allclose(result.shares, expected)


def test_too_few_labels_is_an_outcome_not_an_estimate() -> None:
    confusion = est.confusion_counts([0, 1, 2] * 66, [0, 1, 2] * 66, K)  # 198 labels
    for result in (
        est.difference_estimate([10, 20, 30], confusion, n_min=200),
        est.stratified_estimate([10, 20, 30], confusion, n_min=200),
        acc.acc_estimate([10, 20, 30], confusion, n_min=200),
        est.sample_estimate(confusion, n_min=200),
        acc.pacc_estimate([1.0, 2.0, 3.0], [0] * 198, np.full((198, K), 1 / 3), n_min=200),
    ):
        assert not result.enough
        assert result.shares is None and result.intervals is None
        assert result.labels == 198
        assert result.note == "too few random labels: 198, at least 200 needed for an estimate"


def test_one_label_is_too_few_for_a_variance_whatever_the_minimum() -> None:
    one = est.confusion_counts([0], [1], K)
    result = est.difference_estimate([10, 20, 30], one, n_min=0)
    assert result.note == "too few random labels: 1, at least 2 needed for an estimate"
    assert not est.stratified_estimate([10, 20, 30], one, n_min=0).enough


def test_labels_that_all_agree_leave_only_the_counts_own_width() -> None:
    counts = np.array([2_000, 5_000, 3_000])
    agreed = np.diag([60, 150, 90])
    for estimate in (est.difference_estimate, est.stratified_estimate):
        window = estimate(counts, agreed, n_min=200)
        assert window.intervals is not None
        assert all(high - low < 1e-12 for low, high in window.intervals)
        feed = estimate(counts, agreed, n_min=200, superpopulation=True)
        assert feed.intervals is not None
        widths = np.array([high - low for low, high in feed.intervals])
        q = counts / counts.sum()
        np.testing.assert_allclose(widths, 2 * 1.959964 * np.sqrt(q * (1 - q) / 10_000))
        np.testing.assert_allclose(window.shares, q)


def test_a_class_the_model_never_predicts() -> None:
    """The model calls every negative post neutral: the labels alone can show it."""
    confusion = np.array([[0.0, 0.9, 0.1], [0.0, 0.9, 0.1], [0.0, 0.2, 0.8]])
    labels, predictions = _samples(400, seeds=1, confusion=confusion)
    sample = est.confusion_counts(labels[0], predictions[0], K)
    counts = _counts(confusion=confusion)
    assert counts[0] == 0
    for estimate in (est.difference_estimate, est.stratified_estimate):
        result = estimate(counts, sample, n_min=200)
        assert result.shares is not None and result.intervals is not None
        assert result.intervals[0][0] <= TRUE[0] <= result.intervals[0][1]
    adjusted = acc.acc_estimate(counts, sample, n_min=200)  # M is singular: least squares
    assert adjusted.shares is not None and sum(adjusted.shares) == pytest.approx(1.0)
    assert all(0 <= s <= 1 for s in adjusted.shares)


def test_a_class_never_labelled() -> None:
    """No post of the first class in the feed, yet the model calls a few posts that."""
    true = np.array([0.0, 0.6, 0.4])
    labels, predictions = _samples(300, seeds=1, true=true)
    sample = est.confusion_counts(labels[0], predictions[0], K)
    assert sample[0].sum() == 0 and sample[:, 0].sum() > 0
    counts = _counts(true=true)
    for result in (
        est.difference_estimate(counts, sample, n_min=200),
        est.stratified_estimate(counts, sample, n_min=200),
    ):
        assert result.shares is not None and result.intervals is not None
        assert result.shares[0] < 0.02 and result.intervals[0][0] == 0.0
    adjusted = acc.acc_estimate(counts, sample, n_min=200)
    assert adjusted.shares is not None and adjusted.intervals is not None
    assert adjusted.shares[0] == 0.0 and adjusted.intervals[0] == (0.0, 0.0)


def test_a_predicted_class_with_no_labelled_post_keeps_its_word_and_a_wide_interval() -> None:
    confusion = np.array([[50, 0, 10], [10, 0, 70], [5, 0, 55]])  # nothing predicted neutral
    result = est.stratified_estimate([300, 100, 600], confusion, n_min=200)
    assert result.intervals is not None
    low, high = result.intervals[1]
    assert high - low >= 2 * 1.959964 * 0.1 * 0.5  # q_j / 2 at the least


def test_pacc_centres_on_the_truth() -> None:
    """Probabilities drawn per true class: the window's sums are their exact expectation."""
    rng = np.random.default_rng(7)
    alphas = np.array([[6.0, 3.0, 1.0], [1.5, 7.0, 1.5], [0.5, 2.0, 7.5]])
    soft = alphas / alphas.sum(axis=1, keepdims=True)  # E[probabilities | label]
    sums = WINDOW * (soft.T @ TRUE)
    labels = rng.choice(K, size=(200, 300), p=TRUE)
    gamma = rng.gamma(alphas[labels])  # a Dirichlet draw per post, normalised below
    shares, covered = [], []
    for y, g in zip(labels, gamma / gamma.sum(axis=-1, keepdims=True), strict=True):
        result = acc.pacc_estimate(sums, y, g, n_min=200, draws=200)
        assert result.shares is not None and result.intervals is not None
        shares.append(result.shares)
        bounds = np.array(result.intervals)
        covered.append((bounds[:, 0] <= TRUE) & (bounds[:, 1] >= TRUE))
    assert np.abs(np.mean(shares, axis=0) - TRUE).max() < 0.01
    assert np.mean(covered, axis=0).min() >= 0.89


def test_an_empty_window_has_nothing_to_estimate() -> None:
    result = est.difference_estimate([0, 0, 0], np.diag([100, 100, 100]), n_min=200)
    assert result.shares is None and result.note == "no posts in the window"
    assert est.counted_estimate([0, 0, 0]).shares is None


@pytest.mark.parametrize(
    ("counts", "confusion"),
    [([-1, 2, 3], np.eye(3)), ([1, 2, 3], np.eye(2)), ([1, 2, 3], -np.eye(3)), ([5], [[5]])],
)
def test_bad_aggregates_are_refused(counts: list[int], confusion: np.ndarray) -> None:
    with pytest.raises(ValueError):
        est.difference_estimate(counts, confusion, n_min=1)


def test_confusion_counts_checks_its_classes() -> None:
    assert est.confusion_counts([0, 1, 1], [0, 2, 1], 3).tolist() == [
        [1, 0, 0],
        [0, 1, 1],
        [0, 0, 0],
    ]
    with pytest.raises(ValueError, match="0..2"):
        est.confusion_counts([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="equally long"):
        est.confusion_counts([0, 1], [0], 3)
