"""Distributions, emotion counts and time buckets over analysed posts, read from the
rollups (store/rollups.py): a metrics answer costs O(buckets), never O(posts).

Ranges are answered at minute precision: every minute [start, end) touches counts in full.
`estimated_share` is the stratified estimate from the window's random labels where there
are enough of them, else the shipped model's known confusion undone
(services/reporting/estimates.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from pydantic import BaseModel

from sentiment_platform import timegrain
from sentiment_platform.domain import Emotion, Sentiment
from sentiment_platform.services.analysis.quantification import Confusion, load_confusion
from sentiment_platform.services.reporting.estimates import (
    EstimateInfo,
    WindowEstimate,
    window_estimate,
)
from sentiment_platform.store import LabelScope, Reader, rollup_reads, rollups
from sentiment_platform.timegrain import Grain

MAX_BUCKETS = 1_500  # timeline points at most; a longer range gets a coarser bucket
# The latest `end` a timeline can draw to, whatever its bucket: every bucket that starts
# before it ends within the calendar (December 9999's month, and the week holding
# 9999-12-31, would end in year 10000, which no datetime holds).
LAST_END = datetime(9999, 12, 1, tzinfo=UTC)


# A timeline's bucket is a time grain (timegrain.Grain), floored in UTC there. No docstring:
# it would become the enum's description in the OpenAPI schema.
class Bucket(StrEnum):
    MINUTE = Grain.MINUTE.value
    HOUR = Grain.HOUR.value
    DAY = Grain.DAY.value
    WEEK = Grain.WEEK.value  # ISO weeks, from Monday 00:00 UTC
    MONTH = Grain.MONTH.value

    def floor(self, moment: datetime) -> datetime:
        return timegrain.floor(self, moment)

    def next(self, moment: datetime) -> datetime:
        """The start of the bucket after the one starting at `moment`."""
        return timegrain.next_start(self, moment)

    @classmethod
    def for_range(cls, start: datetime, end: datetime) -> Bucket:
        """The finest bucket that keeps a chart readable (at most a few hundred points)."""
        span = end - start
        for bucket, longest in _DEFAULT_SPANS:
            if span <= longest:
                return bucket
        return cls.MONTH

    def fitting(self, start: datetime, end: datetime) -> Bucket:
        """This bucket, or the finest coarser one that keeps the timeline to MAX_BUCKETS."""
        span = end - start
        for bucket in _THIS_AND_COARSER[self]:
            # a span this short touches at most MAX_BUCKETS: no need to count (every request)
            if span <= _SURELY_FITS[bucket] or bucket.count_in(start, end) <= MAX_BUCKETS:
                return bucket
        return Bucket.MONTH

    def count_in(self, start: datetime, end: datetime) -> int:
        """How many buckets [start, end) touches (end itself is excluded)."""
        return timegrain.count_in(self, start, end)


_THIS_AND_COARSER = {bucket: tuple(Bucket)[index:] for index, bucket in enumerate(Bucket)}
# [start, end) touches at most ceil(span / shortest) + 1 buckets
_SURELY_FITS = {bucket: (MAX_BUCKETS - 1) * timegrain.SHORTEST[bucket] for bucket in Bucket}
_DEFAULT_SPANS = (
    (Bucket.MINUTE, timedelta(hours=6)),
    (Bucket.HOUR, timedelta(days=14)),
    (Bucket.DAY, timedelta(days=366)),
    (Bucket.WEEK, timedelta(days=7 * 360)),
)


class Share(BaseModel):
    count: int
    percentage: float


class TimelinePoint(BaseModel):
    bucket_start: datetime
    positive: int = 0
    negative: int = 0
    neutral: int = 0
    total: int = 0


class SourceBreakdown(BaseModel):
    total: int = 0
    positive: int = 0
    negative: int = 0
    neutral: int = 0


class SentimentShare(Share):
    # Percent, estimated as `Metrics.estimate` says; None: nothing to estimate from.
    estimated_share: float | None = None
    # Percent [low, high], 95 %; None: too few random labels (`Metrics.estimate.note`).
    estimated_interval: list[float] | None = None


class Metrics(BaseModel):
    """The `/api/metrics` body, also pushed over the WebSocket."""

    start: datetime
    end: datetime
    bucket: Bucket
    total: int
    sentiment: dict[Sentiment, SentimentShare]
    emotion: dict[Emotion, Share]
    timeline: list[TimelinePoint]
    by_source: dict[str, SourceBreakdown]
    # Analysed posts per model that labelled them: two names when a window mixes models.
    # Not kept per language or copy: the window's (and source's) whatever those filters.
    models: dict[str, int]
    estimate: EstimateInfo
    # Every post of the window per language (ISO 639-1 or "und"), unanalysed ones included;
    # posts stored before language detection have none and are not in it.
    by_language: dict[str, int] = {}
    unanalysed: int = 0  # posts with no sentiment (pending, or no model reads their language)
    duplicates: int = 0  # copies of an earlier post (left out of every count when unique)
    unique: bool = False  # the answer counts each group of copies once
    language: str | None = None  # the answer counts this language's posts alone


def _shares(counts: dict[str, int], labels: type[StrEnum], total: int) -> dict[Any, Share]:
    return {
        label: Share(
            count=counts.get(label.value, 0),
            percentage=round(100 * counts.get(label.value, 0) / total, 2) if total else 0.0,
        )
        for label in labels
    }


@cache
def shipped_confusion() -> Confusion | None:
    """The shipped model's confusion matrix, read once (None: it ships none)."""
    return load_confusion()


def _sentiment_shares(
    counts: dict[str, int], total: int, estimate: WindowEstimate
) -> dict[Sentiment, SentimentShare]:
    shares, intervals = estimate.shares, estimate.intervals
    return {
        label: SentimentShare(
            count=share.count,
            percentage=share.percentage,
            estimated_share=round(100 * shares[label], 2) if shares is not None else None,
            estimated_interval=(
                [round(100 * intervals[label][0], 2), round(100 * intervals[label][1], 2)]
                if intervals is not None
                else None
            ),
        )
        for label, share in _shares(counts, Sentiment, total).items()
    }


async def compute_metrics(
    reader: Reader,
    start: datetime,
    end: datetime,
    bucket: Bucket | None = None,
    source: str | None = None,
    *,
    language: str | None = None,
    unique: bool = False,
    min_labels: int = 200,
) -> Metrics:
    """Counts over analysed posts created in the minutes [start, end) touches, optionally
    for one source and one language, each group of copies once with `unique`, from the
    rollups, with the models that labelled them (from the model rollups, in the same read),
    and the shares estimated with the random labels of the same minutes where there are
    `min_labels` of them. A bucket too fine for the range is coarsened."""
    bucket = (bucket or Bucket.for_range(start, end)).fitting(start, end)
    first = bucket.floor(start)
    if bucket.count_in(start, end) > MAX_BUCKETS:  # centuries: start the chart at the data
        earliest = await rollup_reads.earliest(reader)
        first = max(first, bucket.floor(earliest or end))
        last = bucket.floor(max(start, end - timedelta(microseconds=1)))
        if bucket.count_in(first, last) > MAX_BUCKETS:
            first = last.replace(year=last.year - MAX_BUCKETS // 12 + 1)
    counts = await rollup_reads.summary(
        reader, start, end, bucket.value, source, language=language, unique=unique
    )

    # Plain counters first, the models built once at the end: a pydantic attribute write
    # per row is slow next to a dict's.
    points: dict[datetime, dict[str, int]] = {}
    moment = first
    while moment < end:
        points[moment] = defaultdict(int)
        moment = bucket.next(moment)
    sentiment_counts: dict[str, int] = defaultdict(int)
    for (moment, sentiment), count in counts.timeline.items():
        point = points.get(moment)
        if point is not None:  # else before a century-long chart's first point: not drawn
            point[sentiment] += count
        sentiment_counts[sentiment] += count
    sources: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (name, sentiment), count in counts.by_source.items():
        sources[name][sentiment] += count
    timeline = [
        TimelinePoint(bucket_start=at, total=sum(point.values()), **point)
        for at, point in points.items()
    ]
    by_source = {
        name: SourceBreakdown(total=sum(point.values()), **point)
        for name, point in sorted(sources.items())
    }

    total = sum(sentiment_counts.values())
    estimate = window_estimate(
        sentiment_counts,
        counts.models,
        counts.labels,
        LabelScope(source, *rollups.minute_range(start, end), language=language, unique=unique),
        min_labels=min_labels,
        shipped=shipped_confusion(),
    )
    return Metrics(
        start=start,
        end=end,
        bucket=bucket,
        total=total,
        sentiment=_sentiment_shares(sentiment_counts, total, estimate),
        emotion=_shares(counts.emotions, Emotion, total),
        timeline=timeline,
        by_source=by_source,
        models=dict(sorted(counts.models.items())),
        estimate=estimate.info,
        by_language=dict(sorted(counts.languages.items())),
        unanalysed=counts.unanalysed,
        duplicates=counts.duplicates,
        unique=unique,
        language=language,
    )


def window(minutes: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `minutes` up to now."""
    end = now or datetime.now(UTC)
    return end - timedelta(minutes=minutes), end
