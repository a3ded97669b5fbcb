"""Rows written in bulk, past the bus and the model (`bench load`): PostgreSQL through `COPY`
(asyncpg's `copy_records_to_table`) on connections of their own, SQLite in batched inserts,
then the tables analysed so the planner knows their new size."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.models.database import PostRollup, SentimentAnalysis, SocialMediaPost
from sentiment_platform.store import rollups
from sentiment_platform.store.prepared import dialect_name

ANALYSIS_COLUMNS = (
    "post_ref",
    "sentiment",
    "confidence",
    "emotion",
    "emotion_confidence",
    "model",
    "analyzed_at",
)
# The post's own columns, then the copy of its analysis it carries.
POST_COLUMNS = (
    *("id", "post_id", "source", "content", "author", "created_at", "ingested_at"),
    *ANALYSIS_COLUMNS[1:],
)
POSTS_TABLE = SocialMediaPost.__tablename__
ANALYSES_TABLE = SentimentAnalysis.__tablename__


async def first_free_id(session: AsyncSession, count: int) -> int:
    """The first of `count` post ids the caller may name: on PostgreSQL a block taken from the
    sequence (so COPY can name them while others insert), on SQLite the next after the last."""
    if dialect_name(session) != "postgresql":
        last = await session.scalar(text(f"SELECT coalesce(max(id), 0) FROM {POSTS_TABLE}"))
        return int(last or 0) + 1
    last = await session.scalar(
        text(
            f"SELECT setval(pg_get_serial_sequence('{POSTS_TABLE}', 'id'), "
            f"nextval(pg_get_serial_sequence('{POSTS_TABLE}', 'id')) + :n - 1)"
        ),
        {"n": count},
    )
    return int(last or 0) - count + 1


async def insert_rows(
    session: AsyncSession, posts: list[tuple[Any, ...]], analyses: list[tuple[Any, ...]]
) -> None:
    """Posts (POST_COLUMNS) and their analyses (ANALYSIS_COLUMNS) as batched inserts."""
    await session.execute(
        insert(SocialMediaPost), [dict(zip(POST_COLUMNS, p, strict=True)) for p in posts]
    )
    await session.execute(
        insert(SentimentAnalysis), [dict(zip(ANALYSIS_COLUMNS, a, strict=True)) for a in analyses]
    )


async def copy_rows(
    session_factory: async_sessionmaker[AsyncSession],
    table: str,
    columns: tuple[str, ...],
    records: list[tuple[Any, ...]],
) -> None:
    """One COPY (PostgreSQL) in a transaction of its own, with no statement timeout."""
    if not records:
        return
    async with session_factory() as session, session.begin():
        await rollups.no_statement_timeout(session)
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.copy_records_to_table(table, records=records, columns=list(columns))


async def analyze_tables(session: AsyncSession) -> None:
    """Fresh planner statistics after a bulk write."""
    if dialect_name(session) == "postgresql":
        tables = f"{POSTS_TABLE}, {ANALYSES_TABLE}, {PostRollup.__tablename__}"
        await session.execute(text(f"ANALYZE {tables}"))
    else:
        await session.execute(text("ANALYZE"))
