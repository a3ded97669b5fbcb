"""The metrics window's class shares estimated with an interval, from its counts plus the
random labels of the same window (services/analysis/estimation.py, `stratified_estimate`).

Only labels a random review draw chose, on posts created in the window's minutes (and its
source), predicted by the model that made most of the window's counts, are used: any
other label would bias the estimate (people label the posts they find interesting). With
fewer than `min_labels` of them the answer is what it was without labels: the shipped
confusion matrix undone (label shift assumed), or nothing where none ships. Reading the
labels is O(labels) (`store.label_cells`), so the metrics answer stays O(buckets + labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from sentiment_platform import store
from sentiment_platform.domain import Sentiment
from sentiment_platform.services.analysis.estimation import stratified_estimate
from sentiment_platform.services.analysis.quantification import Confusion, adjusted_shares
from sentiment_platform.store import LabelCell, LabelScope, Reader

STRATIFIED = "stratified"
SHIPPED = "shipped confusion matrix"
COUNTED = "counted"
SHIPPED_LANGUAGE = "en"  # the language the shipped confusion matrix was measured on
_INDEX = {sentiment.value: i for i, sentiment in enumerate(Sentiment)}


class EstimateInfo(BaseModel):
    """How `estimated_share` was computed: `labels` random labels on `model`'s predictions
    in the window (the model with the most counts there; None: nothing counted)."""

    method: str  # "stratified", "shipped confusion matrix" or "counted"
    labels: int
    model: str | None = None
    note: str


@dataclass(frozen=True)
class WindowEstimate:
    """Per sentiment, the share (0-1) and its 95 % interval (None: no interval)."""

    info: EstimateInfo
    shares: dict[Sentiment, float] | None
    intervals: dict[Sentiment, tuple[float, float]] | None


def counting_model(models: Mapping[str, int]) -> str | None:
    """The model that made most of the window's counts (ties: the first name)."""
    if not models:
        return None
    return min(models, key=lambda name: (-models[name], name))


def random_confusion(cells: list[LabelCell], model: str | None) -> np.ndarray:
    """K×K [label, prediction] counts of the random labels on `model`'s predictions."""
    matrix = np.zeros((len(_INDEX), len(_INDEX)), dtype=np.int64)
    for cell in cells:
        if not cell.random or cell.model != model:
            continue
        if cell.label in _INDEX and cell.prediction in _INDEX:
            matrix[_INDEX[cell.label], _INDEX[cell.prediction]] += cell.count
    return matrix


def estimate_from(
    counts: Mapping[str, int],
    confusion: np.ndarray,
    model: str | None,
    *,
    min_labels: int,
    shipped: Confusion | None,
) -> WindowEstimate:
    """The stratified estimate where enough random labels exist, else today's figure."""
    labels = int(confusion.sum())
    vector = [counts.get(s.value, 0) for s in Sentiment]
    if model is not None and labels >= min_labels and sum(vector) > 0:
        estimate = stratified_estimate(vector, confusion, n_min=min_labels)
        if estimate.shares is not None and estimate.intervals is not None:
            note = (
                f"stratified estimate from {labels} random labels on {model}'s predictions"
                " in this window: each predicted class split by what its labelled posts"
                " turned out to be; 95 % interval"
            )
            return WindowEstimate(
                EstimateInfo(method=STRATIFIED, labels=labels, model=model, note=note),
                dict(zip(Sentiment, estimate.shares, strict=True)),
                dict(zip(Sentiment, estimate.intervals, strict=True)),
            )
    why = (
        f"{labels} random labels for {model}, at least {min_labels} needed for an interval"
        if model is not None
        else "no analysed posts in the window: nothing to estimate"
    )
    if shipped is None:
        info = EstimateInfo(method=COUNTED, labels=labels, model=model, note=why)
        return WindowEstimate(info, None, None)
    shares = adjusted_shares({s: counts.get(s.value, 0) for s in Sentiment}, shipped)
    info = EstimateInfo(method=SHIPPED, labels=labels, model=model, note=why)
    return WindowEstimate(info, shares, None)


async def window_estimate(
    reader: Reader,
    counts: Mapping[str, int],
    models: Mapping[str, int],
    scope: LabelScope,
    *,
    min_labels: int,
    shipped: Confusion | None,
) -> WindowEstimate:
    """Read the window's random labels (`scope`: minute-aligned since, until, and the
    source, language and `unique` the counts were filtered by) and estimate. No labels are
    read when nothing was counted.

    The labels are filtered as the counts are (a random draw over every post is random over
    one language's, or over the originals). The model whose predictions they correct is the
    window's main one over every language and copies included (`models` is not kept per
    language), and the shipped confusion matrix, measured on English, is not applied to
    another language's counts: the note says both."""
    model = counting_model(models)
    cells: list[LabelCell] = []
    if model is not None:
        cells = await store.label_cells(reader, scope)
    other_language = scope.language not in (None, SHIPPED_LANGUAGE)
    estimate = estimate_from(
        counts,
        random_confusion(cells, model),
        model,
        min_labels=min_labels,
        shipped=None if other_language else shipped,
    )
    return _noted(estimate, scope, other_language and shipped is not None)


def _noted(estimate: WindowEstimate, scope: LabelScope, unshipped: bool) -> WindowEstimate:
    """The note with what the filters made of the estimate."""
    said = []
    if scope.language is not None:
        said.append(f"counts and random labels of language={scope.language} posts alone")
    if scope.unique:
        said.append("each group of copies counted once, and labels on copies left out")
    if scope.language is not None or scope.unique:
        said.append(
            "the model is the window's main one over every post"
            " (models are not counted per language or copy)"
        )
    if unshipped and estimate.info.method == COUNTED:
        said.append("the shipped confusion matrix is measured on English posts: not applied")
    if not said:
        return estimate
    info = estimate.info.model_copy(update={"note": "; ".join([estimate.info.note, *said])})
    return WindowEstimate(info, estimate.shares, estimate.intervals)
