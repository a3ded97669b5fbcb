"""Which model labelled the analysed posts, per minute, hour and day of `created_at` × source
(`model_rollups`, 0008): a metrics answer names the models its counts come from in
O(buckets), so a window that mixes two models' judgements says so.

Kept beside `post_rollups` by the same writes, in the same transactions, so the two always
count the same analysed posts: `save_batch` adds each post it analyses (`add`), a rescore
moves a post from its old model to its new one, `rollups.rebuild` recomputes both from the
posts and retention's purge drops both tables' old cells (`rebuild`, `purge`, called from
`store.rollups`). An unanalysed post has no model, so it is not counted here.

Its cells are read with the post rollups' (the `models` part of `rollup_reads.summary`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import timegrain
from sentiment_platform.models.database import GRAIN_UNITS, ModelRollup, bucket_floor_sql
from sentiment_platform.store.counts import add_counts, drop_empty
from sentiment_platform.store.prepared import dialect_name

Key = tuple[datetime, str, str]  # (minute, source, model)
NAMES = ("grain", "bucket_start", "source", "model", "count")


async def add(session: AsyncSession, deltas: Counter[Key]) -> None:
    """Add signed counts at the three grains, upserting in sorted key order (no deadlocks);
    cells a move emptied are dropped, so a model no window holds any more is not named."""
    cells: Counter[tuple[str, datetime, str, str]] = Counter()
    for (minute, source, model), count in deltas.items():
        for grain, unit in GRAIN_UNITS.items():
            cells[(grain, timegrain.floor(unit, minute), source, model)] += count
    rows = [(*key, count) for key, count in sorted(cells.items()) if count]
    await add_counts(session, ModelRollup, NAMES, rows)
    await drop_empty(session, ModelRollup, NAMES[:-1], [row[:-1] for row in rows if row[-1] < 0])


def by_model(where: Sequence[ColumnElement[bool]], count: ColumnElement[Any]) -> Select[Any]:
    """The cells' counts (`count`: each row's, signed as the read takes it) per model, as
    rows shaped like `rollup_reads.summary`'s (kind 'm'; no language, and copies are not
    kept apart here, so its two sums are the same)."""
    rows = ModelRollup.__table__.c
    counted = cast(func.sum(count), BigInteger)  # as the post rollups' sums
    return (
        select(literal_column("'m'"), null(), null(), rows.model, null(), counted, counted)
        .where(*where)
        .group_by(rows.model)
    )


async def rebuild(session: AsyncSession, day: datetime) -> int:
    """Recompute the cells from the posts' copy of their analysis, from `day` (a UTC day
    start) on; returns how many cells were written. Written in key order, as the rollups."""
    dialect = dialect_name(session)
    binds = [bindparam("day", type_=ModelRollup.bucket_start.type)]
    await session.execute(
        text("DELETE FROM model_rollups WHERE bucket_start >= :day").bindparams(*binds),
        {"day": day},
    )
    written = 0
    for grain, unit in GRAIN_UNITS.items():
        bucket = bucket_floor_sql(dialect, unit, "created_at")
        result: Any = await session.execute(
            text(
                "INSERT INTO model_rollups (grain, bucket_start, source, model, count)"
                f" SELECT '{grain}', {bucket}, source, model, count(*) FROM social_media_posts"
                " WHERE created_at >= :day AND model IS NOT NULL"
                " GROUP BY 2, 3, 4 ORDER BY 2, 3, 4"
            ).bindparams(*binds),
            {"day": day},
        )
        written += result.rowcount or 0
    return written


async def purge(session: AsyncSession, day: datetime) -> int:
    """Drop the cells of buckets that start before `day` (ROLLUP_RETENTION_DAYS)."""
    result: Any = await session.execute(
        text("DELETE FROM model_rollups WHERE bucket_start < :day").bindparams(
            bindparam("day", type_=ModelRollup.bucket_start.type)
        ),
        {"day": day},
    )
    return int(result.rowcount or 0)
