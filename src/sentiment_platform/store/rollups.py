"""Rollups: how many posts each minute, hour and day holds, per source × sentiment × emotion
× language × copy or not.

Written in the transaction that stores the posts (`add`, from `save_batch`), so they count
exactly what was committed; read by the metrics and by the page totals, so neither scans
posts. Every post is counted at all three grains (`m`, `h`, `d`); unanalysed posts are
counted with sentiment and emotion '' until their analysis moves them to their labels.

Ranges are answered at minute precision: a range counts every minute it touches, in full
(`[floor(start), ceil(end))` to the minute). A range is cut into few cells: whole days from
the day rows, the hours around them from the hour rows, the minutes at the edges from the
minute rows (`pieces`); where an edge fills most of a coarser cell, that cell less the rest
of it (`cover`). A 30-day answer reads at most ~31 + 24 + 60 cells per key, not 43,200.

Two workers adding to the same cells cannot deadlock: each transaction upserts its keys in
one sorted order (`add`). Beside them `model_rollups` counts the same analysed posts by the
model that labelled them and `label_rollups` the random labels; a rebuild and a purge here
do all three tables. The reads (a metrics answer's one statement over all three, a page's
total) are `store/rollup_reads.py`.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import timegrain
from sentiment_platform.domain import as_utc
from sentiment_platform.models.database import GRAIN_UNITS, PostRollup, bucket_floor_sql
from sentiment_platform.store import label_rollups, model_rollups
from sentiment_platform.store.counts import add_counts, drop_empty
from sentiment_platform.store.prepared import dialect_name
from sentiment_platform.timegrain import Grain

UNANALYSED = ""  # sentiment and emotion of a post not analysed yet
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
# The grains a timeline bucket may be summed from, coarsest first: those whose cells nest in it.
GRAINS_FOR = {
    unit.value: tuple(
        code for code, grain in reversed(GRAIN_UNITS.items()) if timegrain.nests_in(grain, unit)
    )
    for unit in Grain
}

# (minute, source, sentiment, emotion, language, duplicate): language '' before detection
Key = tuple[datetime, str, str, str, str, bool]
ROLLUP_COLUMNS = (
    *("grain", "bucket_start", "source", "sentiment", "emotion", "language", "duplicate"),
    "count",
)
Span = tuple[str, datetime, datetime]  # (grain, first bucket start, end): a run of cells


def floor(grain: str, moment: datetime) -> datetime:
    """The start of the cell of `grain` (m, h or d) `moment` is counted in (timegrain)."""
    return timegrain.floor(GRAIN_UNITS[grain], moment)


def ceil(grain: str, moment: datetime) -> datetime:
    """`moment` if a cell of `grain` starts there, else the start of the next cell."""
    moment = as_utc(moment)
    floored = floor(grain, moment)
    if floored == moment or moment >= LATEST:
        return floored
    return timegrain.next_start(GRAIN_UNITS[grain], floored)


def minute_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """Every minute [start, end) touches: what a rollup answer counts."""
    return (
        floor("m", start) if start is not None else EARLIEST,
        ceil("m", end) if end is not None else LATEST,
    )


def pieces(start: datetime, end: datetime, grains: Sequence[str] = ("d", "h", "m")) -> list[Span]:
    """Cut minute-aligned [start, end) into cells of the coarsest grains allowed."""
    if start >= end:
        return []
    grain, finer = grains[0], grains[1:]
    if not finer:
        return [(grain, start, end)]
    inner_start, inner_end = ceil(grain, start), floor(grain, end)
    if inner_start >= inner_end:
        return pieces(start, end, finer)
    return [
        *pieces(start, inner_start, finer),
        (grain, inner_start, inner_end),
        *pieces(inner_end, end, finer),
    ]


# [start, end) as runs of cells added and runs taken away: (added, taken)
Cover = tuple[tuple[Span, ...], tuple[Span, ...]]
_Cut = tuple[list[Span], list[Span]]  # the same, while it is being cut


@lru_cache(maxsize=4096)
def cover(start: datetime, end: datetime, grains: tuple[str, ...] = ("d", "h", "m")) -> Cover:
    """Minute-aligned [start, end) in few cells, some of them taken away: an edge that
    fills most of a coarser cell is read as that cell less the rest of it. A 30-day range
    from 01:15 is then the day from 00:00 less one hour and fifteen minutes, not 22 hours
    and 45 minutes: less than half the rows (`benchmarks/README.md`, "signed cells and plans
    made once").

    Every row is in one run at most, so a row's sign is its run's: the runs of one grain
    never overlap (an edge's cut keeps to the coarser cell it lies in, and a cut whose runs
    would overlap is not taken). Kept for the ranges asked last: a window relative to now is
    asked again and again within its minute, and the cut cost an answer 0.07 ms."""
    added, taken = _cover(start, end, grains)
    return tuple(added), tuple(taken)


def _cover(start: datetime, end: datetime, grains: Sequence[str]) -> _Cut:
    if start >= end:
        return [], []
    grain, finer = grains[0], grains[1:]
    if not finer:
        return [(grain, start, end)], []
    inner_start, inner_end = ceil(grain, start), floor(grain, end)
    if inner_start > inner_end:  # within one cell of this grain
        return _edge(grain, finer, start, end)
    added, taken = _edge(grain, finer, start, inner_start)
    if inner_start < inner_end:
        added.append((grain, inner_start, inner_end))
    more_added, more_taken = _edge(grain, finer, inner_end, end)
    return _joined(added + more_added), taken + more_taken


def _edge(grain: str, finer: Sequence[str], start: datetime, end: datetime) -> _Cut:
    """[start, end) within one cell of `grain`: in finer cells, or as that cell less the
    rest of it (itself cut in finer cells, some taken away: added back), whichever reads
    fewer cells."""
    fine = _cover(start, end, finer)
    if start >= end:
        return fine
    first, last = floor(grain, start), ceil(grain, end)
    if last <= first or last < end:  # no next cell to take (the calendar's end)
        return fine
    before, after = _cover(first, start, finer), _cover(end, last, finer)
    whole = [(grain, first, last), *before[1], *after[1]], before[0] + after[0]
    if not _disjoint(whole):  # both remainders reach into one finer cell
        whole = [(grain, first, last)], pieces(first, start, finer) + pieces(end, last, finer)
    return whole if _cells(whole) < _cells(fine) else fine


def _cells(cut: _Cut) -> int:
    return sum(
        timegrain.count_in(GRAIN_UNITS[grain], low, high)
        for runs in cut
        for grain, low, high in runs
    )


def _disjoint(cut: _Cut) -> bool:
    """No two runs of one grain overlap."""
    runs = sorted([*cut[0], *cut[1]])
    return all(a[0] != b[0] or a[2] <= b[1] for a, b in itertools.pairwise(runs))


def _joined(runs: list[Span]) -> list[Span]:
    """Runs of one grain that meet, as one."""
    joined: list[Span] = []
    for grain, low, high in sorted(runs):
        if joined and joined[-1][0] == grain and joined[-1][2] == low:
            joined[-1] = (grain, joined[-1][1], high)
        else:
            joined.append((grain, low, high))
    return joined


async def add(session: AsyncSession, deltas: Counter[Key]) -> None:
    """Add signed counts at the three grains, upserting keys in sorted order (no
    deadlocks); cells a move emptied are dropped (`counts.drop_empty`)."""
    cells: Counter[tuple[str, datetime, str, str, str, str, bool]] = Counter()
    for (minute, source, sentiment, emotion, language, duplicate), count in deltas.items():
        for grain in GRAIN_UNITS:
            cell = (grain, floor(grain, minute), source, sentiment, emotion, language, duplicate)
            cells[cell] += count
    rows = [(*key, count) for key, count in sorted(cells.items()) if count]
    names = ROLLUP_COLUMNS
    await add_counts(session, PostRollup, names, rows)
    await drop_empty(session, PostRollup, names[:-1], [row[:-1] for row in rows if row[-1] < 0])


async def rebuild(session: AsyncSession, since: datetime | None = None) -> int:
    """Recompute the post, model and label rollups from the posts, from the day `since`
    falls in (None: all).

    Returns how many cells were written. Run it after writing posts around `save_batch`
    (a manual import, `bench load`). The cells are written in key order, so a range's
    cells lie together on disk and an answer reads few pages.
    """
    dialect = dialect_name(session)
    await no_statement_timeout(session)  # an operator's command: minutes at 10M posts
    day = floor("d", since) if since is not None else EARLIEST
    params = {"day": day}
    binds = [bindparam("day", type_=PostRollup.bucket_start.type)]
    await session.execute(
        text("DELETE FROM post_rollups WHERE bucket_start >= :day").bindparams(*binds), params
    )
    written = 0
    for grain, unit in GRAIN_UNITS.items():
        bucket = bucket_floor_sql(dialect, unit, "created_at")
        result: Any = await session.execute(
            text(
                "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, emotion, "
                f"language, duplicate, count) SELECT '{grain}', {bucket}, source, "
                "coalesce(sentiment, ''), coalesce(emotion, ''), coalesce(language, ''), "
                "duplicate_of IS NOT NULL, count(*) FROM social_media_posts "
                "WHERE created_at >= :day GROUP BY 2, 3, 4, 5, 6, 7 ORDER BY 2, 3, 4, 5, 6, 7"
            ).bindparams(*binds),
            params,
        )
        written += result.rowcount or 0
    written += await model_rollups.rebuild(session, day)
    return written + await label_rollups.rebuild(session, day)


async def no_statement_timeout(session: AsyncSession) -> None:
    """Lift DB_STATEMENT_TIMEOUT_MS for this transaction (PostgreSQL), and allow parallel
    plans again (db.create_engine turns them off): for the bulk work of operators' commands
    and exports, not for requests."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SET LOCAL statement_timeout = 0"))
        await session.execute(text("SET LOCAL max_parallel_workers_per_gather = 2"))


async def purge(session: AsyncSession, before: datetime) -> int:
    """Drop the cells, post, model and label rollups alike, of buckets that start before the
    day `before` falls in (ROLLUP_RETENTION_DAYS)."""
    day = floor("d", before)
    result: Any = await session.execute(
        text("DELETE FROM post_rollups WHERE bucket_start < :before").bindparams(
            bindparam("before", type_=PostRollup.bucket_start.type)
        ),
        {"before": day},
    )
    purged = int(result.rowcount or 0) + await model_rollups.purge(session, day)
    return purged + await label_rollups.purge(session, day)
