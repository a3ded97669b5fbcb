"""Class shares of a feed estimated from the model's counts plus a few random labels.

Counting a model's labels (classify-and-count) reports its errors as shares, and on text
unlike its training data those errors do not cancel. Undoing a confusion matrix measured
elsewhere (`quantification.adjusted_shares`) assumes the posts of each class look as they
did there, which a new domain breaks: it can do worse than the raw count. What does hold
in the user's own domain is a uniform random sample of their posts with true labels. The
estimators here combine that sample with the model's counts over the whole window:

- `difference_estimate`: counted share + mean(label − prediction) over the labelled posts,
  the basic estimator of prediction-powered inference (Angelopoulos et al., Science 2023).
  Unbiased whatever the model's errors are, with a CLT interval.
- `stratified_estimate`: the same correction made per predicted class: each class of the
  count is split by what the labelled posts the model put in it turned out to be.
- `estimation_acc`: adjusted classify-and-count with the confusion matrix estimated from
  the labelled posts themselves (in-domain), and its probabilistic twin, PACC.
- `sample_estimate`: the labels alone, ignoring the model (what the model adds is the gap).
- `counted_estimate`: the model's count, no labels, no interval.

Every function takes aggregates, never all posts: per-class counts (or summed
probabilities) over the window, and the labelled sample as confusion counts
(`confusion_counts`) or, for PACC, per-labelled-post probabilities (the sample is small).
Classes are positions 0..K-1 in the caller's order. The labelled posts must be a uniform
random draw from the same window, predicted by the same model that made the counts;
posts chosen any other way (the uncertain ones, skipped ones left out) bias every
estimate here. The platform uses `stratified_estimate`: docs/models.md ("Estimates") has
the measurement that chose it.

What an interval means: the window's true shares are the target. The model's count is
then exact (every post in the window was predicted), so the uncertainty is the labelled
sample's, as if drawn with replacement (a draw without replacement is a little narrower,
so the interval errs wide). `superpopulation=True` instead treats the window as a sample
of a longer-running feed and adds the count's own binomial variance, negligible for any
window much larger than the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class Estimate:
    """Estimated shares (summing to 1) with a `level` interval per class, or why not.

    `shares` and `intervals` are None when there are too few labels (`note` says how
    many there are and how many are needed) or nothing to estimate from; `intervals`
    alone is None for the count, which has no labels to measure its error with.
    """

    method: str
    labels: int
    shares: tuple[float, ...] | None
    intervals: tuple[tuple[float, float], ...] | None
    note: str | None = None

    @property
    def enough(self) -> bool:
        return self.shares is not None


def confusion_counts(labels: ArrayLike, predictions: ArrayLike, classes: int) -> np.ndarray:
    """K×K counts of labelled posts, [true label, model's prediction], from class indices."""
    y, f = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if y.shape != f.shape or y.ndim != 1:
        raise ValueError("labels and predictions must be equally long 1-d sequences")
    if y.size and (min(y.min(), f.min()) < 0 or max(y.max(), f.max()) >= classes):
        raise ValueError(f"class indices must be in 0..{classes - 1}")
    return np.bincount(y * classes + f, minlength=classes * classes).reshape(classes, classes)


def counted_estimate(counts: ArrayLike) -> Estimate:
    """The model's counted shares: what the platform reports without labels.

    No interval: the count has no sampling error on its own window, and its real error,
    the model's bias on this feed, cannot be measured without labels.
    """
    q = window_shares(counts)
    if q is None:
        return Estimate("counted", 0, None, None, "no posts in the window")
    return Estimate("counted", 0, _tuple(q), None, "no labels: no interval")


def sample_estimate(confusion: ArrayLike, *, n_min: int, level: float = 0.95) -> Estimate:
    """The labelled sample's own shares with Wilson intervals, ignoring the model.

    The yardstick for the estimators that use the model: they are worth it only where
    they beat this.
    """
    c = checked_confusion(confusion)
    n = int(c.sum())
    if n < (needed := max(n_min, 1)):
        return too_few("sample", n, needed)
    p, z = c.sum(axis=1) / n, z_score(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return finished("sample", n, p, centre - half, centre + half)


def difference_estimate(
    counts: ArrayLike,
    confusion: ArrayLike,
    *,
    n_min: int,
    level: float = 0.95,
    superpopulation: bool = False,
) -> Estimate:
    """Counted share + mean over the labelled of (1[label = k] − 1[prediction = k]).

    The mean of that "rectifier" is the model's bias on this feed, measured where it
    matters, so the estimate is unbiased whatever the confusion is, including on text
    unlike the training data; it only needs the labelled posts to be a uniform draw from
    the window. Its variance is the rectifier's over n (plus the count's over N with
    `superpopulation`), small where the model is mostly right. Every term comes from the
    confusion counts: the rectifier of class k is +1 where k is the label but not the
    prediction, −1 the reverse, else 0.
    The interval is the normal one (CLT), clipped to [0, 1]; the shares always sum to 1.
    """
    ready = prepared("difference", counts, confusion, n_min=n_min, floor=2)
    if isinstance(ready, Estimate):
        return ready
    q, c, n = ready
    labelled, predicted, agreed = c.sum(axis=1), c.sum(axis=0), np.diag(c)
    mean = (labelled - predicted) / n
    second = (labelled + predicted - 2 * agreed) / n
    variance = np.maximum(second - mean**2, 0.0) * n / (n - 1) / n
    if superpopulation:
        variance = variance + q * (1 - q) / window_total(counts)
    share = q + mean
    half = z_score(level) * np.sqrt(variance)
    return finished("difference", n, share, share - half, share + half)


def stratified_estimate(
    counts: ArrayLike,
    confusion: ArrayLike,
    *,
    n_min: int,
    level: float = 0.95,
    superpopulation: bool = False,
) -> Estimate:
    """Σ over predicted classes j of (counted share of j) × P(label k | prediction j).

    P(label | prediction) is read off the labelled posts the model put in each class, so
    each class of the count is corrected by what its own posts turned out to be: the
    difference estimator's idea with one correction per predicted class instead of one
    overall (post-stratification by the prediction; the regression estimator with the
    predictions as controls). Like it, it is unbiased under a uniform draw whatever the
    confusion, and its variance, Σ_j q_j² P(k|j)(1 − P(k|j)) / (n_j − 1), is never
    larger than the difference estimator's for large n. No matrix is inverted. A
    predicted class with no labelled post is taken at its word (P(k|j) = 1 for k = j)
    with the largest variance a share can have (q_j² / 4); one with a single post gets
    that variance too.
    """
    ready = prepared("stratified", counts, confusion, n_min=n_min, floor=2)
    if isinstance(ready, Estimate):
        return ready
    q, counted, n = ready
    c = counted.astype(float)
    per_prediction = c.sum(axis=0)
    seen = per_prediction > 0
    given = np.where(seen, c / np.where(seen, per_prediction, 1.0), np.eye(q.size))
    share = given @ q
    spread = np.where(
        per_prediction > 1,
        given * (1 - given) / np.maximum(per_prediction - 1, 1.0),
        0.25,
    )
    variance = spread @ q**2
    if superpopulation:
        variance = variance + q * (1 - q) / window_total(counts)
    half = z_score(level) * np.sqrt(variance)
    return finished("stratified", n, share, share - half, share + half)


# Helpers shared with estimation_acc.


def finished(
    method: str,
    n: int,
    share: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    renormalised: bool = False,
) -> Estimate:
    """Clip to [0, 1]; a share clipped at 0 leaves the others renormalised to sum to 1."""
    share = np.clip(share, 0.0, 1.0)
    if not renormalised and share.sum() > 0:
        share = share / share.sum()
    low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    intervals = tuple((float(lo), float(hi)) for lo, hi in zip(low, high, strict=True))
    return Estimate(method, n, _tuple(share), intervals)


def prepared(
    method: str, counts: ArrayLike, confusion: ArrayLike, *, n_min: int, floor: int
) -> tuple[np.ndarray, np.ndarray, int] | Estimate:
    """The window's shares, the checked confusion counts and n for an estimator from the
    window's counts and the labelled sample; or the Estimate saying why there is none (an
    empty window, fewer than max(n_min, floor) labels)."""
    q = window_shares(counts)
    c = checked_confusion(confusion, like=q)
    n = int(c.sum())
    if q is None:
        return Estimate(method, n, None, None, "no posts in the window")
    if n < (needed := max(n_min, floor)):
        return too_few(method, n, needed)
    return q, c, n


def too_few(method: str, n: int, needed: int) -> Estimate:
    note = f"too few random labels: {n}, at least {needed} needed for an estimate"
    return Estimate(method, n, None, None, note)


def window_shares(counts: ArrayLike) -> np.ndarray | None:
    values = np.asarray(counts, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("counts must be one number per class, at least two classes")
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(f"counts must be finite and not negative: {values.tolist()}")
    total = values.sum()
    return None if total <= 0 else values / total


def window_total(counts: ArrayLike) -> int:
    return int(round(float(np.asarray(counts, dtype=float).sum())))


def checked_confusion(confusion: ArrayLike, like: np.ndarray | None = None) -> np.ndarray:
    c = np.asarray(confusion, dtype=np.int64)
    k = c.shape[0] if c.ndim == 2 else -1
    if c.ndim != 2 or c.shape != (k, k) or (like is not None and k != like.size):
        raise ValueError(f"confusion must be K×K counts over the same classes, got {c.shape}")
    if (c < 0).any():
        raise ValueError("confusion counts must not be negative")
    return c


@cache  # one level in practice; a NormalDist and its inverse CDF cost a metrics answer 5 µs
def z_score(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (got {level})")
    return NormalDist().inv_cdf((1 + level) / 2)


def _tuple(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
