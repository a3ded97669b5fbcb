"""Rollups: how many posts each minute, hour and day holds, per source × sentiment × emotion.

Written in the transaction that stores the posts (`add`, from `save_batch`), so they count
exactly what was committed; read by the metrics and by the page totals, so neither scans
posts. Every post is counted at all three grains (`m`, `h`, `d`); unanalysed posts are
counted with sentiment and emotion '' until their analysis moves them to their labels.

Ranges are answered at minute precision: a range counts every minute it touches, in full
(`[floor(start), ceil(end))` to the minute). A range is cut into the fewest cells: whole
days from the day rows, the hours around them from the hour rows, the minutes at the edges
from the minute rows, so a 30-day answer reads ~30 + 48 + 120 cells per key, not 43,200.

Two workers adding to the same cells cannot deadlock: each transaction upserts its keys in
one sorted order (`add`). Beside them `model_rollups` counts the same analysed posts by the
model that labelled them and `label_rollups` the random labels; a rebuild and a purge here
do all three tables, and a metrics answer reads all three in one statement (`Summary`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import timegrain
from sentiment_platform.domain import as_utc
from sentiment_platform.models.database import (
    GRAIN_UNITS,
    LabelRollup,
    ModelRollup,
    PostRollup,
    bucket_floor_sql,
)
from sentiment_platform.store import label_rollups, model_rollups, prepared
from sentiment_platform.store.counts import add_counts, drop_empty
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows, instant_of_text
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


# Statements are built once per shape (how many cells, which filters) with the values bound:
# building one per request cost more than running it.
_LABELS = ("source", "sentiment", "emotion")
_AT = PostRollup.bucket_start.type


def _where(
    cells: int, labels: Sequence[str], labelled: bool, table: Any = PostRollup.__table__
) -> list[ColumnElement[bool]]:
    rows = table.c
    clauses = [
        or_(
            *(
                and_(
                    rows.grain == bindparam(f"grain{i}"),
                    rows.bucket_start >= bindparam(f"low{i}", type_=_AT),
                    rows.bucket_start < bindparam(f"high{i}", type_=_AT),
                )
                for i in range(cells)
            )
        )
    ]
    clauses += [rows[label] == bindparam(label) for label in labels]
    if labelled:
        clauses.append(rows.sentiment != UNANALYSED)
    return clauses


def _params(spans: Sequence[Span], **labels: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {name: value for name, value in labels.items() if value is not None}
    for i, (grain, low, high) in enumerate(spans):
        params |= {f"grain{i}": grain, f"low{i}": low, f"high{i}": high}
    return params


@cache
def _total_statement(cells: int, labels: tuple[str, ...]) -> Any:
    return select(func.coalesce(func.sum(PostRollup.count), 0)).where(
        *_where(cells, labels, labelled=False)
    )


@cache
def _summary_statement(dialect: str, unit: str, cells: int, by_source: bool) -> Any:
    """Three sums of one read of the cells, so an answer returns its sums, not every cell
    (bucket × source × sentiment × emotion) it reads: per (bucket, sentiment), per
    (source, sentiment), per emotion; and, from `model_rollups` over the same cells, per
    model. Rows are (kind 't' / 's' / 'e' / 'm', moment, source, label, count). PostgreSQL
    sums the labels in one pass over the cells (GROUPING SETS); SQLite has no GROUPING SETS,
    so it groups a CTE three times."""
    moment: Any = literal_column(bucket_floor_sql(dialect, unit, "post_rollups.bucket_start"))
    rows = PostRollup.__table__.c
    labels = ("source",) if by_source else ()
    where = _where(cells, labels, labelled=True)
    models = (  # and the random labels whose draws cover the range, per model
        model_rollups.by_model(_where(cells, labels, False, ModelRollup.__table__)),
        label_rollups.by_cell(_where(cells, labels, False, LabelRollup.__table__), by_source),
    )
    if dialect == "postgresql":
        kind = case({3: "t", 1: "s"}, value=func.grouping(rows.source, rows.emotion), else_="e")
        labelled = (
            select(
                kind,
                cast(moment, Text),  # text decodes faster than a timestamptz (store/post_pages)
                rows.source,
                func.coalesce(rows.emotion, rows.sentiment),  # the set's label (the other: NULL)
                func.sum(rows.count),
            )
            .where(*where)
            .group_by(
                func.grouping_sets(
                    tuple_(moment, rows.sentiment),
                    tuple_(rows.source, rows.sentiment),
                    rows.emotion,
                )
            )
        )
        return union_all(labelled, *models)
    read = (
        select(moment.label("moment"), rows.source, rows.sentiment, rows.emotion, rows.count)
        .where(*where)
        .cte("cells")
    )
    c = read.c
    total = func.sum(c.count)
    return union_all(
        select(literal_column("'t'"), c.moment, null(), c.sentiment, total).group_by(
            c.moment, c.sentiment
        ),
        select(literal_column("'s'"), null(), c.source, c.sentiment, total).group_by(
            c.source, c.sentiment
        ),
        select(literal_column("'e'"), null(), null(), c.emotion, total).group_by(c.emotion),
        *models,
    )


async def total(
    reader: Reader,
    start: datetime | None,
    end: datetime | None,
    *,
    source: str | None = None,
    sentiment: str | None = None,
    emotion: str | None = None,
) -> int:
    """Posts in every minute [start, end) touches (unbounded sides: all), by the filters."""
    spans = pieces(*minute_range(start, end))
    if not spans:
        return 0
    params = _params(spans, source=source, sentiment=sentiment, emotion=emotion)
    statement = _total_statement(len(spans), tuple(name for name in _LABELS if name in params))
    [(counted,)] = await fetch_rows(reader, statement, params)
    return int(counted)


@dataclass(slots=True)
class Summary:
    """Analysed posts over a range: per (bucket start, sentiment), per (source, sentiment),
    per emotion, per model."""

    timeline: dict[tuple[datetime, str], int] = field(default_factory=dict)
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    emotions: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    labels: label_rollups.Cells = field(default_factory=dict)  # the covered random labels


async def summary(
    reader: Reader, start: datetime, end: datetime, unit: str, source: str | None = None
) -> Summary:
    """The counts of the minutes [start, end) touches, summed three ways; `unit` (minute,
    hour, day, week or month) is the timeline's bucket."""
    answer = Summary()
    minutes = minute_range(start, end)
    spans = pieces(*minutes, GRAINS_FOR[unit])
    if not spans:
        return answer
    dialect = dialect_name(reader)
    statement = _summary_statement(dialect, unit, len(spans), source is not None)
    params = _params(spans, source=source) | label_rollups.reach_params(*minutes)
    for kind, moment, name, label, count in await fetch_rows(reader, statement, params):
        if kind == "t":
            answer.timeline[(_moment(moment), label)] = int(count)
        elif kind == "s":
            answer.by_source[(name, label)] = int(count)
        elif kind == "l":  # name: the model, moment: its prediction
            answer.labels[(name, label, moment)] = int(count)
        elif kind == "m":
            if count:  # a rescore may leave a model none of the window's posts keep
                answer.models[label] = int(count)
        else:
            answer.emotions[label] = int(count)
    return answer


async def earliest(reader: Reader) -> datetime | None:
    """The first day holding any post (None: the store is empty)."""
    found = await reader.scalar(
        select(func.min(PostRollup.bucket_start)).where(PostRollup.grain == "d")
    )
    return found


async def rebuild(session: AsyncSession, since: datetime | None = None) -> int:
    """Recompute the rollups and the model rollups from the posts, from the day `since`
    falls in (None: all).

    Returns how many cells were written. Run it after writing posts around `save_batch`
    (a manual import, `bench load`). The cells are written in key order, so a range's
    cells lie together on disk and an answer reads few pages.
    """
    dialect = dialect_name(session)
    await prepared.no_statement_timeout(session)  # an operator's command: minutes at 10M posts
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


async def purge(session: AsyncSession, before: datetime) -> int:
    """Drop the cells, post and model rollups alike, of buckets that start before the day
    `before` falls in (ROLLUP_RETENTION_DAYS)."""
    day = floor("d", before)
    result: Any = await session.execute(
        text("DELETE FROM post_rollups WHERE bucket_start < :before").bindparams(
            bindparam("before", type_=PostRollup.bucket_start.type)
        ),
        {"before": day},
    )
    purged = int(result.rowcount or 0) + await model_rollups.purge(session, day)
    return purged + await label_rollups.purge(session, day)


def _moment(value: datetime | str) -> datetime:
    """A bucket start as each store reads it: PostgreSQL's text (an infinity included,
    `instant_of_text`), SQLite's naive UTC datetime."""
    if isinstance(value, str):
        return instant_of_text(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
