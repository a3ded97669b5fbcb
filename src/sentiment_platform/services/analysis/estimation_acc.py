"""Adjusted classify-and-count with a confusion matrix measured in the user's own domain.

ACC undoes the model's confusion: the counted shares q are Mᵀp for the true shares p,
with M[i][j] = P(prediction j | label i). `quantification.adjusted_shares` does it with the
matrix shipped with the model, which fails out of its domain; here M comes from the random
labelled posts of the feed itself, so it holds there. Inverting a matrix measured on a few
hundred posts magnifies their noise, though, which the difference and stratified
estimators (`estimation`) avoid by never inverting anything. Kept for comparison
(`benchmarks/trust.py`) and for models whose probabilities are rolled up (PACC).
"""

from __future__ import annotations

import numpy as np

from sentiment_platform.services.analysis.estimation import (
    ArrayLike,
    Estimate,
    finished,
    prepared,
    too_few,
    window_shares,
    window_total,
    z_score,
)

BOOTSTRAP_DRAWS = 1000


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
    ready = prepared("acc", counts, confusion, n_min=n_min, floor=1)
    if isinstance(ready, Estimate):
        return ready
    q, c, n = ready
    rng = np.random.default_rng(seed)
    cells = rng.multinomial(n, c.ravel() / n, size=draws).reshape(draws, *c.shape)
    total = window_total(counts)
    qs = rng.multinomial(total, q, size=draws) / total if superpopulation else q[None, :]
    point = _adjust(q[None, :], c[None].astype(float))[0]
    low, high = _percentiles(_adjust(qs, cells.astype(float)), level)
    return finished("acc", n, point, low, high, renormalised=True)


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
    q = window_shares(probability_sums)
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=float)
    n = int(y.size)
    if q is None:
        return Estimate("pacc", n, None, None, "no posts in the window")
    if p.shape != (n, q.size):
        raise ValueError(f"probabilities must be n×K = {n}×{q.size}, got {p.shape}")
    if n < (needed := max(n_min, 1)):
        return too_few("pacc", n, needed)
    onehot = np.eye(q.size)[y]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(draws, n)) + n * np.arange(draws)[:, None]
    weights = np.bincount(picks.ravel(), minlength=draws * n).reshape(draws, n).astype(float)
    outer = (onehot[:, :, None] * p[:, None, :]).reshape(n, -1)  # each post's cell weights
    soft = (weights @ outer).reshape(draws, q.size, q.size)
    point = _adjust(q[None, :], (onehot.T @ p)[None])[0]
    low, high = _percentiles(_adjust(q[None, :], soft), level)
    return finished("pacc", n, point, low, high, renormalised=True)


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
    z_score(level)  # the same check of `level` as the normal intervals'
    low, high = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return low, high
