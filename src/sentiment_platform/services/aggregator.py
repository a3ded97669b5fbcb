"""Distributions, emotion counts and time buckets over analysed posts, computed in SQL.

Bucketing is done by the database (`date_trunc` on PostgreSQL, `strftime` on SQLite) so
only a few hundred rows ever leave it, whatever the number of posts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import Emotion, Sentiment, as_utc
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost


class Bucket(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def width(self) -> timedelta:
        return _WIDTHS[self]

    def floor(self, moment: datetime) -> datetime:
        moment = as_utc(moment)
        if self is Bucket.DAY:
            return moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if self is Bucket.HOUR:
            return moment.replace(minute=0, second=0, microsecond=0)
        return moment.replace(second=0, microsecond=0)

    @classmethod
    def for_range(cls, start: datetime, end: datetime) -> Bucket:
        """The finest bucket that keeps a chart readable (at most a few hundred points)."""
        span = end - start
        if span <= timedelta(hours=6):
            return cls.MINUTE
        if span <= timedelta(days=14):
            return cls.HOUR
        return cls.DAY

    def count_in(self, start: datetime, end: datetime) -> int:
        """How many buckets [start, end) touches (end itself is excluded)."""
        last = self.floor(max(start, end - timedelta(microseconds=1)))
        return int((last - self.floor(start)) / self.width) + 1


_WIDTHS = {
    Bucket.MINUTE: timedelta(minutes=1),
    Bucket.HOUR: timedelta(hours=1),
    Bucket.DAY: timedelta(days=1),
}


_SQLITE_FORMATS = {
    Bucket.MINUTE: "%Y-%m-%d %H:%M:00",
    Bucket.HOUR: "%Y-%m-%d %H:00:00",
    Bucket.DAY: "%Y-%m-%d 00:00:00",
}


def _bucket_start(dialect: str, column: Any, bucket: Bucket) -> ColumnElement[Any]:
    """The start of the UTC bucket a timestamp falls in, in the dialect's own SQL."""
    if dialect == "sqlite":
        return func.strftime(literal_column(f"'{_SQLITE_FORMATS[bucket]}'"), column)
    # PostgreSQL: the connection's time zone is UTC (see db.create_engine).
    return func.date_trunc(literal_column(f"'{bucket.value}'"), column)


def _as_moment(value: datetime | str) -> datetime:
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


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


class Metrics(BaseModel):
    """The `/api/metrics` body, also pushed over the WebSocket."""

    start: datetime
    end: datetime
    bucket: Bucket
    total: int
    sentiment: dict[Sentiment, Share]
    emotion: dict[Emotion, Share]
    timeline: list[TimelinePoint]
    by_source: dict[str, SourceBreakdown]


def _shares(counts: dict[str, int], labels: type[StrEnum], total: int) -> dict[Any, Share]:
    return {
        label: Share(
            count=counts.get(label.value, 0),
            percentage=round(100 * counts.get(label.value, 0) / total, 2) if total else 0.0,
        )
        for label in labels
    }


async def compute_metrics(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    bucket: Bucket | None = None,
    source: str | None = None,
) -> Metrics:
    """Counts over analysed posts created in [start, end), optionally for one source."""
    bucket = bucket or Bucket.for_range(start, end)

    dialect = session.get_bind().dialect.name
    bucket_start = _bucket_start(dialect, SocialMediaPost.created_at, bucket).label("bucket_start")
    groups = (
        bucket_start,
        SocialMediaPost.source,
        SentimentAnalysis.sentiment,
        SentimentAnalysis.emotion,
    )
    # One scan, grouped finely enough (buckets x sources x 3 x 6 rows at most) that every
    # figure below is a sum over it.
    query = (
        select(*groups, func.count())
        .select_from(SocialMediaPost)
        .join(SocialMediaPost.analysis)
        .where(SocialMediaPost.created_at >= start, SocialMediaPost.created_at < end)
        .group_by(*groups)
    )
    if source is not None:
        query = query.where(SocialMediaPost.source == source)
    rows = await session.execute(query)

    timeline = {
        moment: TimelinePoint(bucket_start=moment)
        for moment in (
            bucket.floor(start) + i * bucket.width for i in range(bucket.count_in(start, end))
        )
    }
    sentiment_counts: dict[str, int] = defaultdict(int)
    emotion_counts: dict[str, int] = defaultdict(int)
    sources: dict[str, SourceBreakdown] = defaultdict(SourceBreakdown)
    for moment, name, sentiment, emotion, count in rows:
        point = timeline[_as_moment(moment)]
        setattr(point, sentiment, getattr(point, sentiment) + count)
        point.total += count
        breakdown = sources[name]
        setattr(breakdown, sentiment, getattr(breakdown, sentiment) + count)
        breakdown.total += count
        sentiment_counts[sentiment] += count
        emotion_counts[emotion] += count

    total = sum(sentiment_counts.values())
    return Metrics(
        start=start,
        end=end,
        bucket=bucket,
        total=total,
        sentiment=_shares(sentiment_counts, Sentiment, total),
        emotion=_shares(emotion_counts, Emotion, total),
        timeline=list(timeline.values()),
        by_source=dict(sorted(sources.items())),
    )


def window(minutes: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `minutes` up to now."""
    end = now or datetime.now(UTC)
    return end - timedelta(minutes=minutes), end
