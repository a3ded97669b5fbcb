"""The metrics window's class shares estimated with an interval, from its counts plus the
random labels of the same window (services/analysis/estimation.py, `stratified_estimate`).

Only labels a random review draw chose, on posts created in the window's minutes (and its
source), predicted by the model that made most of the window's counts, are used: any
other label would bias the estimate (people label the posts they find interesting). With
fewer than `min_labels` of them the answer is what it was without labels: the shipped
confusion matrix undone (label shift assumed), or nothing where none ships. The labels
come from the label rollups, read with the counts in one statement
(`rollup_reads.summary`), so the metrics answer stays O(buckets).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel

from sentiment_platform.domain import Sentiment
from sentiment_platform.services.analysis.estimation import stratified_estimate
from sentiment_platform.services.analysis.quantification import Confusion, adjusted_shares
from sentiment_platform.store import LabelScope

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


def random_confusion(cells: Mapping[tuple[str, str, str], int], model: str | None) -> np.ndarray:
    """K×K [label, prediction] counts of the random labels on `model`'s predictions, from
    (model, label, prediction) → count."""
    matrix = np.zeros((len(_INDEX), len(_INDEX)), dtype=np.int64)
    for (name, label, prediction), count in cells.items():
        if name == model and label in _INDEX and prediction in _INDEX:
            matrix[_INDEX[label], _INDEX[prediction]] += count
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


def window_estimate(
    counts: Mapping[str, int],
    models: Mapping[str, int],
    labels: Mapping[tuple[str, str, str], int],
    scope: LabelScope,
    *,
    min_labels: int,
    shipped: Confusion | None,
) -> WindowEstimate:
    """Estimate from the window's counts per sentiment and per model and its random labels
    (model, label, prediction → count; `rollup_reads.Summary.labels`), read with the counts
    and filtered as they are (`scope`: the source, language and `unique` of the counts).

    A random draw over every post is random over one language's, or over the originals.
    The model whose predictions the labels correct is the window's main one over every
    language and copies included (`models` is not kept per language), and the shipped
    confusion matrix, measured on English, is not applied to another language's counts:
    the note says both."""
    model = counting_model(models)
    other_language = scope.language not in (None, SHIPPED_LANGUAGE)
    estimate = estimate_from(
        counts,
        random_confusion(labels, model),
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
