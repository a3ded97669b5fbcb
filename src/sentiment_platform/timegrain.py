"""The one way to floor time to a bucket: the grains, where an instant's bucket starts,
where the next bucket starts, and how wide a bucket is.

Buckets are UTC, so one instant falls in one bucket however it was written: an aware
datetime in any zone is converted to UTC first, and a naive one is taken as UTC already,
as everywhere in the platform (`domain.as_utc`, the `UTCDateTime` column). A floor comes
back aware, in UTC. The metrics' timeline, the rollups, the rule counts and the SQL
expression (`models.database.bucket_floor_sql`) all floor through here, so they agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sentiment_platform.domain import as_utc


class Grain(StrEnum):
    """A bucket's size, finest first; the names are what the API and SQL's date_trunc use."""

    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"  # ISO weeks, from Monday 00:00 UTC
    MONTH = "month"


_RANK: Final[dict[str, int]] = {grain: rank for rank, grain in enumerate(Grain)}
# The grains of a fixed width (a month has none), keyed by Grain (its name finds it too).
WIDTHS: Final[dict[str, timedelta]] = {
    Grain.MINUTE: timedelta(minutes=1),
    Grain.HOUR: timedelta(hours=1),
    Grain.DAY: timedelta(days=1),
    Grain.WEEK: timedelta(days=7),
}
# The least time a bucket of each grain spans: for bounds that need no calendar.
SHORTEST: Final[dict[str, timedelta]] = WIDTHS | {Grain.MONTH: timedelta(days=28)}


def floor(grain: str, moment: datetime) -> datetime:
    """The UTC start of the `grain` bucket (a Grain or its name) that `moment` falls in."""
    moment = as_utc(moment).replace(second=0, microsecond=0)
    if grain == Grain.MINUTE:
        return moment
    moment = moment.replace(minute=0)
    if grain == Grain.HOUR:
        return moment
    moment = moment.replace(hour=0)
    if grain == Grain.DAY:
        return moment
    if grain == Grain.WEEK:
        return moment - timedelta(days=moment.weekday())
    if grain == Grain.MONTH:
        return moment.replace(day=1)
    raise ValueError(f"unknown time grain {grain!r}")


def nests_in(fine: str, coarse: str) -> bool:
    """Whether every `fine` bucket lies within one `coarse` bucket, so counts kept per `fine`
    bucket sum to the `coarse` ones (a week can straddle two months)."""
    if fine == Grain.WEEK and coarse == Grain.MONTH:
        return False
    return _RANK[fine] <= _RANK[coarse]


def next_start(grain: str, start: datetime) -> datetime:
    """The start of the bucket after the one starting at `start` (a floor of `grain`)."""
    if grain == Grain.MONTH:
        year, month = divmod(start.year * 12 + start.month, 12)
        return start.replace(year=year, month=month + 1)
    return start + WIDTHS[grain]


def count_in(grain: str, start: datetime, end: datetime) -> int:
    """How many `grain` buckets [start, end) touches (end itself is excluded; at least 1)."""
    first = floor(grain, start)
    last = floor(grain, max(start, end - timedelta(microseconds=1)))
    if grain == Grain.MONTH:
        return (last.year - first.year) * 12 + last.month - first.month + 1
    return int((last - first) / WIDTHS[grain]) + 1
