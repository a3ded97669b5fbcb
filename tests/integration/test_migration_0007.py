"""0007 on a store written by 0006 around today's validation: posts dated 0001-01-01 (on
PostgreSQL `-infinity`, as asyncpg wrote them), before 1970, `infinity`, BC and after 9999
are moved to when they arrived, and the rollups count them there — on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.config import Settings
from sentiment_platform.db import MIGRATIONS_DIR, create_engine
from sentiment_platform.models.database import GRAIN_UNITS, UTCDateTime, bucket_floor_sql
from sentiment_platform.services.reporting.aggregator import Bucket, compute_metrics
from sentiment_platform.store import PostFilter, count_matches, posts_page, rollups
from sentiment_platform.store.post_pages import decode_cursor
from tests.support.databases import scratch_store

pytestmark = pytest.mark.asyncio

ARRIVED = datetime(2026, 1, 15, 10, 0, 30, tzinfo=UTC)
LATER = datetime(2026, 1, 16, 8, 0, tzinfo=UTC)
STAMPS = (bindparam("t", type_=UTCDateTime()), bindparam("i", type_=UTCDateTime()))
# post_id, created_at (a datetime, or SQL for what no datetime holds), ingested_at, sentiment
ROWS: list[tuple[str, datetime | str, datetime, str | None]] = [
    # asyncpg writes this one as -infinity: what POST /api/posts let in before 0007.
    ("year-1", datetime(1, 1, 1, tzinfo=UTC), ARRIVED, "negative"),
    ("1969", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), ARRIVED, None),
    ("epoch", datetime(1970, 1, 1, tzinfo=UTC), ARRIVED, "negative"),  # in range: kept
    ("same-minute", datetime(2026, 1, 15, 10, 0, 10, tzinfo=UTC), ARRIVED, "negative"),
]
PG_ONLY: list[tuple[str, datetime | str, datetime, str | None]] = [
    ("minus-infinity", "'-infinity'", LATER, "positive"),
    ("infinity", "'infinity'", LATER, "positive"),
    ("bc", "'0044-03-15 12:00:00+00 BC'", LATER, None),
    ("year-10000", "'10000-01-01 00:00:00+00'", LATER, None),
]


def _upgrade(connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def old_store(request, tmp_path: Path):
    rows = ROWS if request.param == "sqlite" else ROWS + PG_ONLY
    async with scratch_store(request.param, tmp_path, "m0007") as url:
        engine = create_engine(Settings(database_url=url))
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "0006")
            for post_id, created_at, ingested_at, sentiment in rows:
                params = {"p": post_id, "c": f"post {post_id}", "s": sentiment, "i": ingested_at}
                if isinstance(created_at, datetime):
                    stamp, binds, params = ":t", STAMPS, params | {"t": created_at}
                else:  # raw SQL: what no datetime can write
                    stamp, binds = created_at, STAMPS[1:]
                labels = "'anger', 0.9" if sentiment else "NULL, NULL"
                statement = text(
                    "INSERT INTO social_media_posts (post_id, source, content, created_at, "
                    "ingested_at, sentiment, emotion, confidence) "
                    f"VALUES (:p, 'twitter', :c, {stamp}, :i, :s, {labels})"
                )
                await connection.execute(statement.bindparams(*binds), params)
        async with AsyncSession(engine) as session, session.begin():
            await _count_as_0006(session)
        yield engine, request.param
        await engine.dispose()


async def _count_as_0006(session: AsyncSession) -> None:
    """The cells as the platform kept them at 0006 (no language, copies or model rollups)."""
    dialect = session.bind.dialect.name
    for grain, unit in GRAIN_UNITS.items():
        bucket = bucket_floor_sql(dialect, unit, "created_at")
        await session.execute(
            text(
                "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, emotion, count)"
                f" SELECT '{grain}', {bucket}, source, coalesce(sentiment, ''), "
                "coalesce(emotion, ''), count(*) FROM social_media_posts GROUP BY 2, 3, 4, 5"
            )
        )


async def _cells(session: AsyncSession) -> list[tuple]:
    found = await session.execute(
        text(
            "SELECT grain, bucket_start, source, sentiment, emotion, count FROM post_rollups "
            "ORDER BY 1, 2, 3, 4, 5"
        ).columns(bucket_start=UTCDateTime())
    )
    return [tuple(row) for row in found]


async def test_out_of_range_posts_move_to_their_arrival_and_their_counts_follow(
    old_store,
) -> None:
    engine, kind = old_store
    if kind == "postgres":
        async with engine.connect() as connection:
            stored = await connection.scalar(
                text("SELECT created_at::text FROM social_media_posts WHERE post_id = 'year-1'")
            )
        assert stored == "-infinity"  # what the issue found
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, "head")

    async with AsyncSession(engine) as session:
        dates = dict(
            (
                await session.execute(
                    text("SELECT post_id, created_at FROM social_media_posts").columns(
                        created_at=UTCDateTime()
                    )
                )
            ).all()
        )
        expected = {
            "year-1": ARRIVED,
            "1969": ARRIVED,
            "epoch": datetime(1970, 1, 1, tzinfo=UTC),
            "same-minute": datetime(2026, 1, 15, 10, 0, 10, tzinfo=UTC),
        }
        if kind == "postgres":
            expected |= dict.fromkeys(("minus-infinity", "infinity", "bc", "year-10000"), LATER)
        assert dates == expected

        migrated = await _cells(session)
        minute = ("m", datetime(2026, 1, 15, 10, 0, tzinfo=UTC), "twitter", "negative", "anger")
        assert (*minute, 2) in migrated  # year-1 moved into the minute same-minute holds
        assert all(cell[1] >= datetime(1970, 1, 1, tzinfo=UTC) for cell in migrated)

        # Every read answers in range: pages with their cursors, totals, metrics.
        items, cursor = [], None
        while True:
            page, last = await posts_page(session, PostFilter(limit=2, cursor=cursor))
            items += page
            if last is None:
                break
            cursor = decode_cursor(last)

        assert sorted(item["post_id"] for item in items) == sorted(expected)
        assert all(item["created_at"][:4] in ("1970", "2026") for item in items)
        assert await count_matches(session, PostFilter()) == (len(expected), False)
        everything = await compute_metrics(
            session, datetime(1, 1, 1, tzinfo=UTC), LATER.replace(hour=9), Bucket.MONTH
        )
        analysed = sum(1 for *_, sentiment in ROWS if sentiment)
        assert everything.total == analysed + (2 if kind == "postgres" else 0)

        # The cells are exactly what a rebuild from the posts gives (no posts were deleted).
        await rollups.rebuild(session)
        assert await _cells(session) == migrated
        await session.rollback()


async def test_rows_in_range_are_left_alone(tmp_path: Path) -> None:
    """An upgrade of a sane store changes no post and no cell."""
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'ok.db'}"))
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, "0006")
        await connection.execute(
            text(
                "INSERT INTO social_media_posts (post_id, source, content, created_at, "
                "ingested_at) VALUES ('ok', 'news', 'fine', :t, :i)"
            ).bindparams(*STAMPS),
            {"t": ARRIVED, "i": LATER},
        )
    async with AsyncSession(engine) as session, session.begin():
        await _count_as_0006(session)
        before = await _cells(session)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, "head")
    async with AsyncSession(engine) as session:
        assert await _cells(session) == before
        items, _ = await posts_page(session, PostFilter())
        assert [item["created_at"] for item in items] == ["2026-01-15T10:00:30Z"]
    await engine.dispose()
