"""Class shares adjusted for a classifier's known confusion (adjusted classify-and-count).

Counting labels (classify-and-count) reports the model's errors as shares: a model that
calls a fifth of neutral posts negative inflates the negative share. If the model's
confusion is known, P(predicted j | true i) = C[i][j], the counted shares q relate to the
true shares p by q = Cᵀp; solving for p undoes the confusion (Forman 2008, "Quantifying
counts and costs via classification"; the "adjusted count" of Saerens et al.).

What it assumes: label shift. The mix of classes may change, but within each class the
posts look to the model as they did where C was estimated (held-out training tweets), so
C still holds. When posts change in kind (another platform, register, topic or period),
C is wrong and the correction can be worse than the raw count: on GoEmotions' Reddit
comments it is (MODEL_CARD.md). With few posts the estimate is noisy: it divides by the
gaps between C's rows, so small samples swing more than their raw counts.

Pure functions over counts, so it works on rollups as well as on single posts:
`adjusted_shares` takes counts and a matrix; `load_confusion` reads the shipped model's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from sentiment_platform.domain import Sentiment

# P(predicted | true): confusion[true][predicted]; each row sums to 1.
Confusion = Mapping[Sentiment, Mapping[Sentiment, float]]

CONFIG_KEY = "sentiment_confusion"


def adjusted_shares(
    counts: Mapping[Sentiment, int], confusion: Confusion
) -> dict[Sentiment, float]:
    """Share of each sentiment (0-1, summing to 1) with the classifier's confusion undone.

    `counts` are predicted labels counted (a missing sentiment counts 0). The solution of
    Cᵀp = q is clipped to [0, 1] and renormalised; a singular matrix (a model that cannot
    tell two classes apart) falls back to least squares. No posts: every share is 0.
    """
    labels = list(Sentiment)
    missing = [s for s in labels if s not in confusion]
    if missing:
        raise ValueError(f"confusion matrix has no row for {', '.join(missing)}")
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"counts must not be negative: {dict(counts)}")
    total = sum(counts.get(s, 0) for s in labels)
    if total == 0:
        return dict.fromkeys(labels, 0.0)
    counted = np.array([counts.get(s, 0) / total for s in labels])
    rows = tuple(tuple(float(confusion[t].get(p, 0.0)) for p in labels) for t in labels)
    undo = _undoing(rows)
    if undo is not None:
        estimate = undo @ counted
    else:
        estimate = np.linalg.lstsq(np.array(rows).T, counted, rcond=None)[0]
    estimate = np.clip(estimate, 0.0, 1.0)
    if estimate.sum() <= 0:  # nothing left after clipping: the count is all we know
        estimate = counted
    estimate = estimate / estimate.sum()
    return {s: float(v) for s, v in zip(labels, estimate, strict=True)}


@lru_cache(maxsize=8)
def _undoing(rows: tuple[tuple[float, ...], ...]) -> np.ndarray | None:
    """(Cᵀ)⁻¹ for a checked confusion matrix, once per matrix (every metrics answer uses
    the shipped one); None when it is singular."""
    matrix = np.array(rows)
    if not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("each confusion row must sum to 1 (P(predicted | true))")
    try:
        return np.linalg.inv(matrix.T)
    except np.linalg.LinAlgError:
        return None


def confusion_from_config(
    config: Mapping[str, Any],
) -> dict[Sentiment, dict[Sentiment, float]] | None:
    """The confusion matrix a model's `config.json` ships (None: the model ships none)."""
    section = config.get(CONFIG_KEY)
    if not section:
        return None
    rows = section["p_predicted_given_true"]
    return {
        Sentiment(true): {Sentiment(predicted): float(p) for predicted, p in row.items()}
        for true, row in rows.items()
    }


def load_confusion(
    files: Traversable | Path | None = None,
) -> dict[Sentiment, dict[Sentiment, float]] | None:
    """The embedded model's confusion matrix, estimated on held-out training tweets.

    `files` is an artifact directory; default, the one packaged with the platform
    (`sentiment_platform/embedded_model`). None when its config ships no matrix.
    """
    files = files or resources.files("sentiment_platform") / "embedded_model"
    config = json.loads((files / "config.json").read_text("utf-8"))
    return confusion_from_config(config)
