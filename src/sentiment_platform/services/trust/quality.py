"""The model's quality on the user's own feed, from the random labels (`GET /api/quality`).

Only random labels are compared: labels on posts a random draw chose (services/trust/
review.py) whose filter covers the range asked. Labels people chose to give (the uncertain
queue, the posts page, a file) are counted in `labels` but compared with nothing: they are
the hard posts, or the easy ones, never a fair sample.

Each label is compared with the prediction stored on the same post, and that prediction's
model. When the random labels span several models (a model switched, history partly
rescored), the figures are one model's: the one asked for (`model=`), else the model of the
most recently analysed random-labelled post, the one scoring posts now as far as the labels
can tell. `models` counts the random labels on each.

`macro_recall` is the mean recall over the classes that have labels. Its 95 % interval
treats each class's recall as a binomial proportion with a Jeffreys posterior, Beta(hits +
½, misses + ½), and takes the 2.5th and 97.5th percentiles of the mean of draws from them
(a fixed seed: the same labels give the same interval). Unlike a bootstrap over the
labelled posts, it does not collapse to a point for a class the model got all right on a
few labels. Figures are percent, as `evaluate` prints them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

from sentiment_platform import store
from sentiment_platform.domain import Sentiment
from sentiment_platform.store import LabelCell, LabelScope, Reader

CLASSES = (Sentiment.NEGATIVE.value, Sentiment.NEUTRAL.value, Sentiment.POSITIVE.value)
INTERVAL_DRAWS = 4_000
SEED = 30


Interval = Annotated[list[float], Field(min_length=2, max_length=2)]


class Quality(BaseModel):
    """`GET /api/quality`. The figures are null while there is no random label on the
    model's predictions; `compared` is how many they are computed from."""

    labels: int  # every label in the range (random or not, analysed or not)
    random_labels: int  # labels on posts a covering random draw chose (analysed)
    skipped: int  # posts such draws handed out that were skipped and are still unlabelled
    macro_recall: float | None = None
    macro_recall_interval: Interval | None = None  # [low, high]
    accuracy: float | None = None
    # confusion[label][prediction]: random labels by the true class, then the predicted one
    confusion: dict[str, dict[str, int]] | None = None
    share_true: dict[str, float] | None = None
    share_predicted: dict[str, float] | None = None
    model: str | None = None
    compared: int = 0
    models: dict[str, int] = {}  # random labels per model that made the prediction


async def compute_quality(reader: Reader, scope: LabelScope, model: str | None = None) -> Quality:
    cells = await store.label_cells(reader, scope)
    skipped = await store.skipped_count(reader, scope)
    compared = [c for c in cells if c.random and c.prediction is not None]
    models: Counter[str] = Counter()
    latest: dict[str, datetime] = {}
    for cell in compared:
        name = cell.model or ""
        models[name] += cell.count
        if cell.latest is not None and (name not in latest or cell.latest > latest[name]):
            latest[name] = cell.latest
    chosen = model if model is not None else _newest(models, latest)
    answer = Quality(
        labels=sum(c.count for c in cells),
        random_labels=sum(models.values()),
        skipped=skipped,
        model=chosen,
        models=dict(sorted(models.items())),
    )
    matrix = confusion_matrix([c for c in compared if (c.model or "") == chosen])
    if not matrix.sum():
        return answer
    return answer.model_copy(update=figures(matrix))


def _newest(models: Counter[str], latest: dict[str, datetime]) -> str | None:
    if not models:
        return None
    return max(models, key=lambda name: (name in latest, latest.get(name), models[name], name))


def confusion_matrix(cells: list[LabelCell]) -> np.ndarray:
    """3×3 counts [label, prediction] in CLASSES order (other labels are not ours: left out)."""
    index = {name: i for i, name in enumerate(CLASSES)}
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for cell in cells:
        if cell.label in index and cell.prediction in index:
            matrix[index[cell.label], index[cell.prediction]] += cell.count
    return matrix


def figures(matrix: np.ndarray) -> dict[str, object]:
    """Quality's figures from a non-empty [label, prediction] count matrix."""
    total = int(matrix.sum())
    hits = np.diag(matrix).astype(float)
    per_label = matrix.sum(axis=1).astype(float)
    per_prediction = matrix.sum(axis=0).astype(float)
    present = per_label > 0
    recall = float(np.mean(hits[present] / per_label[present]))
    low, high = macro_recall_interval(hits[present], per_label[present])
    confusion: dict[str, dict[str, int]] = defaultdict(dict)
    for i, label in enumerate(CLASSES):
        for j, prediction in enumerate(CLASSES):
            confusion[label][prediction] = int(matrix[i, j])
    return {
        "compared": total,
        "macro_recall": _percent(recall),
        "macro_recall_interval": [_percent(min(low, recall)), _percent(max(high, recall))],
        "accuracy": _percent(float(hits.sum()) / total),
        "confusion": dict(confusion),
        "share_true": {c: _percent(per_label[i] / total) for i, c in enumerate(CLASSES)},
        "share_predicted": {c: _percent(per_prediction[i] / total) for i, c in enumerate(CLASSES)},
    }


def macro_recall_interval(
    hits: np.ndarray, labels: np.ndarray, level: float = 0.95
) -> tuple[float, float]:
    """The mean of per-class recalls drawn from Beta(hits + ½, misses + ½) (Jeffreys), at
    the `level` percentiles. Fractions, not percent."""
    rng = np.random.default_rng(SEED)
    draws = rng.beta(hits + 0.5, labels - hits + 0.5, size=(INTERVAL_DRAWS, len(hits)))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws.mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def _percent(fraction: float) -> float:
    return round(100 * float(fraction), 2)
