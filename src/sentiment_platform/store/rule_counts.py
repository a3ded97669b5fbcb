"""Per-rule, per-minute counts of analysed posts (`rule_counts`): what the alert monitor
evaluates every rule from, so no check reads a post. The caller owns the transaction.

A count's minute is the post's ANALYSIS time truncated to the minute (UTC), so a backlog is
counted when the workers reach it (the monitor's window rule). Rule 0 (the built-in rule)
counts every analysed post; a user rule counts the posts it matches. A rescore moves counts
between labels within their rule and minute (`move_rule_counts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import timegrain
from sentiment_platform.models.alerting import RuleCount
from sentiment_platform.store.counts import add_counts, drop_empty
from sentiment_platform.timegrain import Grain

BASELINE = timedelta(hours=24)


@dataclass(frozen=True, slots=True, order=True)
class RuleHit:
    """`count` posts of one rule analysed in one minute with one sentiment and emotion."""

    rule_id: int
    minute: datetime
    sentiment: str
    emotion: str
    count: int = 1


def floor_minute(moment: datetime) -> datetime:
    """The minute a moment is counted in: its UTC minute (timegrain), as the rollups count."""
    return timegrain.floor(Grain.MINUTE, moment)


def aggregate_hits(hits: Iterable[RuleHit]) -> list[RuleHit]:
    """One hit per key, counts summed, SORTED by key: every writer takes the rows' locks in
    the same order, so concurrent workers cannot deadlock on them."""
    summed: Counter[tuple[int, datetime, str, str]] = Counter()
    for hit in hits:
        summed[(hit.rule_id, floor_minute(hit.minute), hit.sentiment, hit.emotion)] += hit.count
    return [RuleHit(*key, count) for key, count in sorted(summed.items()) if count > 0]


async def add_rule_counts(session: AsyncSession, hits: Sequence[RuleHit]) -> int:
    """Add the hits to their counts, in key order (`store.counts`). Returns the number of
    rows written."""
    rows = aggregate_hits(hits)
    names = ("rule_id", "minute", "sentiment", "emotion", "count")
    values = [(h.rule_id, h.minute, h.sentiment, h.emotion, h.count) for h in rows]
    await add_counts(session, RuleCount, names, values)
    return len(rows)


# (rule, minute, sentiment and emotion it moves from, sentiment and emotion it moves to)
Move = tuple[int, datetime, str, str, str, str]
Cell = tuple[int, datetime, str, str]  # (rule, minute, sentiment, emotion)
_NAMES = ("rule_id", "minute", "sentiment", "emotion", "count")


async def move_rule_counts(session: AsyncSession, moves: Counter[Move]) -> int:
    """Move `count` posts of a rule and minute from one (sentiment, emotion) to another: a
    rescore's correction. Returns how many were moved.

    A move takes at most what its cell holds: a post that was never counted there (written
    around the worker, as `bench load` does, or matched by a rule edited since) moves
    nothing, so no count goes below zero. Every cell it touches is locked first, in key
    order, by adding 0 (`add_counts`, as every writer locks them), so a worker counting the
    same minute cannot deadlock with it and no one changes a cell between its read and
    its write."""
    moves = Counter({move: n for move, n in moves.items() if n > 0 and move[2:4] != move[4:]})
    if not moves:
        return 0
    keys = sorted({key for r, m, *labels in moves for key in _ends(r, m, labels)})
    await add_counts(session, RuleCount, _NAMES, [(*key, 0) for key in keys])
    held: dict[Cell, int] = {
        (rule_id, floor_minute(minute), sentiment, emotion): count
        for rule_id, minute, sentiment, emotion, count in await session.execute(
            select(*(RuleCount.__table__.c[name] for name in _NAMES)).where(
                RuleCount.rule_id.in_(sorted({key[0] for key in keys})),
                RuleCount.minute.in_(sorted({key[1] for key in keys})),
            )
        )
    }
    deltas: Counter[Cell] = Counter()
    for (rule_id, minute, *labels), wanted in sorted(moves.items()):
        origin, target = _ends(rule_id, minute, labels)
        taken = min(wanted, held.get(origin, 0) + deltas[origin])
        deltas[origin] -= taken
        deltas[target] += taken
    rows = [(*key, count) for key, count in sorted(deltas.items()) if count]
    await add_counts(session, RuleCount, _NAMES, rows)
    await drop_empty(session, RuleCount, _NAMES[:-1], keys)
    return sum(-count for *_, count in rows if count < 0)


def _ends(rule_id: int, minute: datetime, labels: Sequence[str]) -> tuple[Cell, Cell]:
    """The cells a move leaves and reaches."""
    old_sentiment, old_emotion, new_sentiment, new_emotion = labels
    return (rule_id, minute, old_sentiment, old_emotion), (
        rule_id,
        minute,
        new_sentiment,
        new_emotion,
    )


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One rule's posts in a window, by sentiment and by emotion."""

    sentiments: dict[str, int] = field(default_factory=dict)
    emotions: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.sentiments.values())


async def rule_window(
    session: AsyncSession, rule_id: int, start: datetime, end: datetime
) -> WindowCounts:
    """The rule's counts of the minutes in [start, end): one grouped read of the primary key."""
    rows = await session.execute(
        select(RuleCount.sentiment, RuleCount.emotion, func.sum(RuleCount.count))
        .where(RuleCount.rule_id == rule_id, RuleCount.minute >= start, RuleCount.minute < end)
        .group_by(RuleCount.sentiment, RuleCount.emotion)
    )
    sentiments: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    for sentiment, emotion, count in rows:
        sentiments[sentiment] += int(count)
        emotions[emotion] += int(count)
    return WindowCounts(dict(sentiments), dict(emotions))


async def rule_volume_baseline(
    session: AsyncSession, rule_id: int, window_minutes: int, end: datetime
) -> float | None:
    """The rule's average count per window over the 24 hours before `end` (the window's
    start). A rule counted for less than 24 h is averaged over the time since its first
    counted minute (quiet minutes count as 0); None with less than one window of history."""
    start = end - BASELINE
    first, total = (
        await session.execute(
            select(func.min(RuleCount.minute), func.coalesce(func.sum(RuleCount.count), 0)).where(
                RuleCount.rule_id == rule_id, RuleCount.minute >= start, RuleCount.minute < end
            )
        )
    ).one()
    if first is None:
        return None
    span = end - max(first, start)
    windows = span / timedelta(minutes=window_minutes)
    if windows < 1:
        return None
    return int(total) / windows


async def prune_rule_counts(session: AsyncSession, before: datetime) -> int:
    """Delete counts of minutes before `before` (the monitor reads 24 h + a window back)."""
    result = await session.execute(delete(RuleCount).where(RuleCount.minute < before))
    return int(getattr(result, "rowcount", 0) or 0)


async def delete_rule_counts(session: AsyncSession, rule_id: int) -> None:
    await session.execute(delete(RuleCount).where(RuleCount.rule_id == rule_id))
