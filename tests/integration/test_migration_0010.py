"""0010 on a store written by 0009, on SQLite and PostgreSQL: the rollups keep every count
under the new key (language '', not a copy), posts and rules gain their columns with the
defaults the issue asks for, and a downgrade folds the language and copy cells back into
the old key without losing a count."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from sentiment_platform.config import Settings
from sentiment_platform.db import MIGRATIONS_DIR, create_engine
from tests.support.databases import scratch_store

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 30, 23, 10, tzinfo=UTC)
CELLS = [("m", "twitter", "negative", "anger", 3), ("h", "twitter", "negative", "anger", 5),
         ("m", "reddit", "", "", 2)]  # fmt: skip


def _migrate(connection, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_at_0009(request, tmp_path: Path):
    async with scratch_store(request.param, tmp_path, "m0010") as url:
        engine = create_engine(Settings(database_url=url))
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0009")
            for grain, source, sentiment, emotion, count in CELLS:
                await connection.execute(
                    text(
                        "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, "
                        "emotion, count) VALUES (:g, :b, :s, :se, :e, :c)"
                    ),
                    {"g": grain, "b": T0.replace(tzinfo=None), "s": source, "se": sentiment,
                     "e": emotion, "c": count},
                )  # fmt: skip
            await connection.execute(
                text(
                    "INSERT INTO alert_rules (name, keywords, metric, threshold, "
                    "window_minutes, min_posts, created_at, updated_at) "
                    "VALUES ('old', '[]', 'negative_share', 0.5, 15, 10, :t, :t)"
                ),
                {"t": T0.replace(tzinfo=None)},
            )
        yield engine
        await engine.dispose()


async def _rollups(connection) -> list[tuple]:
    rows = await connection.execute(
        text("SELECT grain, source, sentiment, emotion, count FROM post_rollups")
    )
    return sorted(tuple(row) for row in rows)


async def test_counts_survive_the_new_key_both_ways(store_at_0009) -> None:
    engine = store_at_0009
    async with engine.begin() as connection:
        await connection.run_sync(_migrate, "0010")
        keyed = await connection.execute(
            text("SELECT DISTINCT language, duplicate FROM post_rollups")
        )
        assert [tuple(row) for row in keyed] == [("", False)]
        assert await _rollups(connection) == sorted(CELLS)
        rule = (await connection.execute(text('SELECT "unique", language FROM alert_rules'))).one()
        assert tuple(rule) == (False, None)  # a rule that exists keeps counting every copy
        # The new key holds a language cell and a copy cell beside the old one.
        for language, duplicate in (("fr", False), ("", True)):
            await connection.execute(
                text(
                    "INSERT INTO post_rollups (grain, bucket_start, source, sentiment, emotion, "
                    "language, duplicate, count) VALUES ('m', :b, 'twitter', 'negative', "
                    "'anger', :l, :d, 1)"
                ),
                {"b": T0.replace(tzinfo=None), "l": language, "d": duplicate},
            )
    async with engine.begin() as connection:
        await connection.run_sync(lambda c: _migrate(c, "0009", down=True))
        folded = dict(((g, s, se, e), c) for g, s, se, e, c in await _rollups(connection))
        assert folded[("m", "twitter", "negative", "anger")] == 5  # 3 + the two new cells
        assert sum(folded.values()) == sum(cell[-1] for cell in CELLS) + 2
