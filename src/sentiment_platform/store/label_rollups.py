"""The random labels per minute, hour and day of their post's `created_at` (`label_rollups`,
0011): what a metrics answer's estimate reads, O(buckets), in the same statement as the
post rollups (`rollup_reads.summary`'s `labels`).

The cells are kept by triggers (models/label_rollup_sql.py), so every write that changes a
random label's cell keeps them in step: a label set, changed or cleared, a rescore, a post
deleted, a random draw meeting a labelled post. Here: the read, and the rebuild and purge
`store.rollups` calls beside its own.

Which labels a range takes: those whose post's widest random draw covers it, as
`GET /api/quality` decides post by post (store/labels.py). A range of one source takes the
draws of every source and of that one (a draw filtered to a source hands out only its
posts); a range of every source only draws with no source filter; and only draws whose
`since` / `until` leave the range inside theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.database import LabelRollup
from sentiment_platform.models.label_rollup_sql import TABLE, rebuild_sql
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows

CELLS: Any = LabelRollup.__table__
_AT = LabelRollup.bucket_start.type
# (model, label, prediction) → random labels: the read's answer
Cells = dict[tuple[str, str, str], int]


def covering(by_source: bool) -> list[ColumnElement[bool]]:
    """The cells whose draw covers a range (`reach_since`, `reach_until` bound)."""
    rows = CELLS.c
    clauses = [
        rows.drawn_since <= bindparam("reach_since", type_=_AT),
        rows.drawn_until >= bindparam("reach_until", type_=_AT),
    ]
    if not by_source:
        clauses.append(rows.all_sources.is_(True))
    return clauses


def by_cell(
    where: Sequence[ColumnElement[bool]], count: ColumnElement[Any], by_source: bool
) -> Select[Any]:
    """The covered cells' counts (`count`: each row's, signed as the read takes it) per
    (model, prediction, label), as rows shaped like `rollup_reads.summary`'s: (kind 'l',
    prediction, model, label, no language, all labels, labels on posts that are not copies)."""
    rows = CELLS.c
    every = cast(func.sum(count), BigInteger)  # as the post rollups' sums
    kept = cast(func.sum(case((rows.duplicate, 0), else_=count)), BigInteger)
    return (
        select(literal_column("'l'"), rows.prediction, rows.model, rows.label, null(), every, kept)
        .where(*where, *covering(by_source))
        .group_by(rows.model, rows.prediction, rows.label)
    )


def reach_params(since: datetime, until: datetime) -> dict[str, datetime]:
    """The range a read's draws must cover (minute-aligned, as the rollups answer)."""
    return {"reach_since": since, "reach_until": until}


async def rebuild(session: AsyncSession, day: datetime) -> int:
    """Recompute the cells of posts created from `day` (a UTC day start) on; returns how
    many cells were written."""
    binds = [bindparam("day", type_=_AT)]
    await session.execute(
        text(f"DELETE FROM {TABLE} WHERE bucket_start >= :day").bindparams(*binds), {"day": day}
    )
    statement = text(rebuild_sql(dialect_name(session))).bindparams(*binds)
    result: Any = await session.execute(statement, {"day": day})
    return int(result.rowcount or 0)


async def purge(session: AsyncSession, day: datetime) -> int:
    """Drop the cells of buckets that start before `day` (ROLLUP_RETENTION_DAYS)."""
    result: Any = await session.execute(
        text(f"DELETE FROM {TABLE} WHERE bucket_start < :day").bindparams(
            bindparam("day", type_=_AT)
        ),
        {"day": day},
    )
    return int(result.rowcount or 0)


_RANGE = (
    select(CELLS.c.model, CELLS.c.label, CELLS.c.prediction, func.sum(CELLS.c.count))
    .where(
        CELLS.c.grain == "d",
        CELLS.c.bucket_start >= bindparam("reach_since", type_=_AT),
        CELLS.c.bucket_start < bindparam("reach_until", type_=_AT),
        *covering(by_source=False),
    )
    .group_by(CELLS.c.model, CELLS.c.label, CELLS.c.prediction)
)


async def random_labels(reader: Reader, since: datetime, until: datetime) -> Cells:
    """The random labels of every source's posts created in the whole days [since, until),
    by draws covering that range: (model, label, prediction) → count, from the day cells."""
    rows = await fetch_rows(reader, _RANGE, reach_params(since, until))
    return {(model, label, prediction): int(count) for model, label, prediction, count in rows}
