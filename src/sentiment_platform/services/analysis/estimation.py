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
- `acc_estimate`: adjusted classify-and-count with the confusion matrix estimated from
  the labelled posts themselves (in-domain), bootstrap interval.
- `pacc_estimate`: the same with mean probabilities instead of hard labels (probabilistic
  ACC), for when the window's summed probabilities are known.
- `sample_estimate`: the labels alone, ignoring the model (what the model adds is the gap).
- `counted_estimate`: the model's count, no labels, no interval.

Every function takes aggregates, never all posts: per-class counts (or summed
probabilities) over the window, and the labelled sample as confusion counts
(`confusion_counts`) or, for PACC, per-labelled-post probabilities (the sample is small).
Classes are positions 0..K-1 in the caller's order. The labelled posts must be a uniform
random draw from the same window, predicted by the same model that made the counts;
posts chosen any other way (the uncertain ones, skipped ones left out) bias every
estimate here.

What an interval means: the window's true shares are the target. The model's count is
then exact (every post in the window was predicted), so the uncertainty is the labelled
sample's, as if drawn with replacement (a draw without replacement is a little narrower,
so the interval errs wide). `superpopulation=True` instead treats the window as a sample
of a longer-running feed and adds the count's own binomial variance, negligible for any
window much larger than the sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
BOOTSTRAP_DRAWS = 1000


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
    q = _shares(counts)
    if q is None:
        return Estimate("counted", 0, None, None, "no posts in the window")
    return Estimate("counted", 0, _tuple(q), None, "no labels: no interval")


def sample_estimate(confusion: ArrayLike, *, n_min: int, level: float = 0.95) -> Estimate:
    """The labelled sample's own shares with Wilson intervals, ignoring the model.

    The yardstick for the estimators that use the model: they are worth it only where
    they beat this.
    """
    c = _confusion(confusion)
    n = int(c.sum())
    if n < max(n_min, 1):
        return _too_few("sample", n, n_min)
    p, z = c.sum(axis=1) / n, _z(level)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return _estimate("sample", n, p, centre - half, centre + half)


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
    `superpopulation`): small where the model is mostly right, never larger than the
    rectifier's range allows. Every term comes from the confusion counts: the rectifier
    of class k is +1 where k is the label but not the prediction, −1 the reverse, else 0.
    The interval is the normal one (CLT), clipped to [0, 1]; the shares always sum to 1.
    """
    q = _shares(counts)
    c = _confusion(confusion, like=q)
    n = int(c.sum())
    if q is None:
        return Estimate("difference", n, None, None, "no posts in the window")
    if n < max(n_min, 2):
        return _too_few("difference", n, n_min)
    labelled, predicted, agreed = c.sum(axis=1), c.sum(axis=0), np.diag(c)
    mean = (labelled - predicted) / n
    second = (labelled + predicted - 2 * agreed) / n
    variance = np.maximum(second - mean**2, 0.0) * n / (n - 1) / n
    if superpopulation:
        variance = variance + q * (1 - q) / _total(counts)
    share = q + mean
    half = _z(level) * np.sqrt(variance)
    return _estimate("difference", n, share, share - half, share + half)


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
    larger for large n. No matrix is inverted. A predicted class with no labelled post
    is taken at its word (P(k|j) = 1 for k = j) with the largest variance a share can
    have (q_j² / 4); one with a single post gets that variance too.
    """
    q = _shares(counts)
    c = _confusion(confusion, like=q).astype(float)
    n = int(c.sum())
    if q is None:
        return Estimate("stratified", n, None, None, "no posts in the window")
    if n < max(n_min, 2):
        return _too_few("stratified", n, n_min)
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
        variance = variance + q * (1 - q) / _total(counts)
    half = _z(level) * np.sqrt(variance)
    return _estimate("stratified", n, share, share - half, share + half)


def acc_estimate(
    counts: ArrayLike,
    confusion: ArrayLike,
    *,
    n_min: int,
    level: float = 0.95,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
    superpopulation: bool = False,
) -> Estimate:
    """Adjusted classify-and-count with the confusion matrix measured on the labelled posts.

    P(prediction j | label i) from the sample; the counted shares q satisfy q = Mᵀp, so p
    solves it (least squares through the pseudo-inverse: a class never labelled gets 0),
    clipped to [0, 1] and renormalised. It assumes the sample's confusion is the window's,
    which a uniform draw from the window gives; but each row of M rests on the few labels
    of its class, and inverting M magnifies their noise, most for rare classes and models
    that mix classes up. The interval is the bootstrap's percentile interval: the labelled
    pairs resampled `draws` times (multinomially over the confusion cells), and the
    counts too with `superpopulation`.
    """
    q = _shares(counts)
    c = _confusion(confusion, like=q)
    n = int(c.sum())
    if q is None:
        return Estimate("acc", n, None, None, "no posts in the window")
    if n < max(n_min, 1):
        return _too_few("acc", n, n_min)
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, c.ravel() / n, size=draws).reshape(draws, *c.shape)
    total = _total(counts)
    qs = rng.multinomial(total, q, size=draws) / total if superpopulation else q[None, :]
    point = _adjust(q[None, :], c[None].astype(float))[0]
    low, high = _percentiles(_adjust(qs, cells.astype(float)), level)
    return _estimate("acc", n, point, low, high, renormalised=True)


def pacc_estimate(
    probability_sums: ArrayLike,
    labels: ArrayLike,
    probabilities: ArrayLike,
    *,
    n_min: int,
    level: float = 0.95,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> Estimate:
    """Probabilistic ACC: ACC with the model's mean probabilities in place of its labels.

    `probability_sums` are the model's class probabilities summed over the window (K);
    `labels` (n) and `probabilities` (n×K) are the labelled posts'. M[i][j] is the mean
    probability of j over the posts labelled i. Soft counts waste less of what the model
    knows than argmax labels (Bella et al. 2010), but it needs every post's full
    probabilities rolled up, which the platform stores only as the top one's confidence.
    Bootstrap interval over the labelled posts.
    """
    q = _shares(probability_sums)
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=float)
    n = int(y.size)
    if q is None:
        return Estimate("pacc", n, None, None, "no posts in the window")
    if p.shape != (n, q.size):
        raise ValueError(f"probabilities must be n×K = {n}×{q.size}, got {p.shape}")
    if n < max(n_min, 1):
        return _too_few("pacc", n, n_min)
    onehot = np.eye(q.size)[y]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(draws, n)) + n * np.arange(draws)[:, None]
    weights = np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(float)
    outer = (onehot[:, :, None] * p[:, None, :]).reshape(n, -1)  # each post's cell weights
    soft = (weights @ outer).reshape(draws, q.size, q.size)
    point = _adjust(q[None, :], (onehot.T @ p)[None])[0]
    low, high = _percentiles(_adjust(q[None, :], soft), level)
    return _estimate("pacc", n, point, low, high, renormalised=True)


def _adjust(q: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Shares p with Mᵀp = q for stacks of confusion counts (B×K×K) and shares (B×K or 1×K).

    Rows with no labels stay zero, so the pseudo-inverse gives their class no share; a
    solution clipped to nothing falls back to the count.
    """
    rows = confusion.sum(axis=2, keepdims=True)
    m = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    a = np.swapaxes(m, 1, 2)
    q = np.broadcast_to(q, (a.shape[0], q.shape[1]))
    p = np.empty_like(q)
    regular = np.abs(np.linalg.det(a)) > 1e-9
    p[regular] = np.linalg.solve(a[regular], q[regular][..., None])[..., 0]
    if (singular := ~regular).any():
        p[singular] = np.einsum("bij,bj->bi", np.linalg.pinv(a[singular]), q[singular])
    p = np.clip(p, 0.0, 1.0)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), q)


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return low, high


def _estimate(
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


def _too_few(method: str, n: int, n_min: int) -> Estimate:
    return Estimate(
        method,
        n,
        None,
        None,
        f"too few random labels: {n}, at least {max(n_min, 1)} needed for an estimate",
    )


def _shares(counts: ArrayLike) -> np.ndarray | None:
    values = np.asarray(counts, dtype=float)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("counts must be one number per class, at least two classes")
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(f"counts must be finite and not negative: {values.tolist()}")
    total = values.sum()
    return None if total <= 0 else values / total


def _total(counts: ArrayLike) -> int:
    return int(round(float(np.asarray(counts, dtype=float).sum())))


def _confusion(confusion: ArrayLike, like: np.ndarray | None = None) -> np.ndarray:
    c = np.asarray(confusion, dtype=np.int64)
    k = c.shape[0] if c.ndim == 2 else -1
    if c.ndim != 2 or c.shape != (k, k) or (like is not None and k != like.size):
        raise ValueError(f"confusion must be K×K counts over the same classes, got {c.shape}")
    if (c < 0).any():
        raise ValueError("confusion counts must not be negative")
    return c


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (got {level})")
    return NormalDist().inv_cdf((1 + level) / 2)


def _tuple(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
