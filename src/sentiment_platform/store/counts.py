"""Adding to counter tables (rollups, rule counts) the way concurrent workers can share.

The rows come pre-aggregated and SORTED by key, so every writer takes the rows' locks in
the same order and two workers cannot deadlock. PostgreSQL gets one statement with one array
per column (`INSERT … SELECT unnest(…) … ON CONFLICT DO UPDATE`), which its plan cache
keeps: a multi-row VALUES statement is compiled again for every batch size.

Counts only grow, except when a rescore moves posts from one cell to another: the cells it
emptied are dropped (`drop_empty`), so a table holds what a rebuild from the posts would.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.database import Base
from sentiment_platform.store.prepared import dialect_name


async def add_counts(
    session: AsyncSession, model: type[Base], names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Upsert `rows` into `model`'s table (key columns, then `count` last, as named by
    `names`) adding each count to the stored one."""
    if not rows:
        return
    dialect = dialect_name(session)
    statement = _upsert(dialect, model, tuple(names))
    if dialect == "postgresql":
        await session.execute(statement, {n: [row[i] for row in rows] for i, n in enumerate(names)})
        return
    await session.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])


@cache
def _upsert(dialect: str, model: type[Base], names: tuple[str, ...]) -> Any:
    """The upsert of one table's counts, built once: the worker adds to three tables per
    batch, and building the statement (and its cache key) each time cost more than
    sending it."""
    table = cast(Table, model.__table__)
    keys = list(names[:-1])
    if dialect == "postgresql":
        arrays = select(
            *(func.unnest(bindparam(name, type_=ARRAY(table.c[name].type))) for name in names)
        )
        pg = postgresql.insert(table).from_select(list(names), arrays)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={"count": table.c.count + pg.excluded.count}
        )
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={"count": table.c.count + lite.excluded.count}
    )


async def drop_empty(
    session: AsyncSession, model: type[Base], keys: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Delete the rows among `rows` (key values, named by `keys`) whose count is now 0.

    Run after `add_counts`, in its transaction, which holds these rows' locks: a writer that
    adds to one of them meanwhile waits, and then inserts it anew."""
    if not rows:
        return
    table = cast(Table, model.__table__)
    columns = [table.c[name] for name in keys]
    if dialect_name(session) == "postgresql":
        arrays = select(
            *(func.unnest(bindparam(name, type_=ARRAY(table.c[name].type))) for name in keys)
        )
        statement: Any = delete(table).where(table.c.count == 0, tuple_(*columns).in_(arrays))
        await session.execute(statement, {n: [row[i] for row in rows] for i, n in enumerate(keys)})
        return
    statement = delete(table).where(
        table.c.count == 0, and_(*(column == bindparam(f"k_{column.name}") for column in columns))
    )
    names = [f"k_{name}" for name in keys]
    await session.execute(statement, [dict(zip(names, row, strict=True)) for row in rows])
