"""0011 on a store written by 0010, on SQLite and PostgreSQL: the label rollups are
backfilled from the labels and random draws there are (a label on a post drawn only for the
uncertain queue, or never drawn, is not a random one; a label on a copy is kept apart), the
triggers keep them from then on, and a downgrade removes both."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine
from tests.integration.test_migration_0010 import _migrate
from tests.support.databases import scratch_store

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 30, 23, 10, tzinfo=UTC)
# post_id, label, drawn by (e is a copy of a)
POSTS = [("a", "negative", "random"), ("b", "positive", "uncertain"), ("c", "neutral", None),
         ("d", None, "random"), ("e", "positive", "random")]  # fmt: skip
COPIES = {"e": "a"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_at_0010(request, tmp_path: Path):
    async with scratch_store(request.param, tmp_path, "m0011") as url:
        engine = create_engine(Settings(database_url=url))
        at = T0.replace(tzinfo=None) if request.param == "sqlite" else T0
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, "0010")
            for key, (post_id, label, strategy) in enumerate(POSTS, start=1):
                await connection.execute(
                    text(
                        "INSERT INTO social_media_posts (id, post_id, source, content, created_at, "
                        "ingested_at, sentiment, model, label_sentiment, language, duplicate_of) "
                        "VALUES (:k, :p, 'news', 'x', :t, :t, 'negative', 'm-a', :l, 'en', :c)"
                    ),
                    {"k": key, "p": post_id, "t": at, "l": label, "c": COPIES.get(post_id)},
                )
                if strategy is not None:
                    await connection.execute(
                        text(
                            "INSERT INTO review_draws (post_ref, strategy, drawn_at) "
                            "VALUES (:k, :s, :t)"
                        ),
                        {"k": key, "s": strategy, "t": at},
                    )
        yield engine
        await engine.dispose()


async def _cells(connection) -> list[tuple]:
    rows = await connection.execute(
        text(
            "SELECT grain, language, duplicate, model, prediction, label, all_sources, count "
            "FROM label_rollups WHERE count <> 0"
        )
    )
    return sorted(tuple(row) for row in rows)


async def test_backfill_then_triggers_then_downgrade(store_at_0010) -> None:
    engine = store_at_0010
    async with engine.begin() as connection:
        await connection.run_sync(_migrate, "0011")
        expected = [
            (grain, "en", copy, "m-a", "negative", label, True, 1)
            for grain in "mhd"
            # a and e (a copy): labelled, drawn at random
            for copy, label in ((False, "negative"), (True, "positive"))
        ]
        assert await _cells(connection) == sorted(expected)
        # from here on the triggers keep them: d labelled, a cleared
        await connection.execute(
            text("UPDATE social_media_posts SET label_sentiment = 'positive' WHERE post_id = 'd'")
        )
        await connection.execute(
            text("UPDATE social_media_posts SET label_sentiment = NULL WHERE post_id = 'a'")
        )
        after = [
            (grain, "en", copy, "m-a", "negative", "positive", True, 1)
            for grain in "mhd"
            for copy in (False, True)  # d, e
        ]
        assert await _cells(connection) == sorted(after)
        # a copy mark moves the label too: d becomes a copy of a
        await connection.execute(
            text("UPDATE social_media_posts SET duplicate_of = 'a' WHERE post_id = 'd'")
        )
        copies = [(grain, "en", True, "m-a", "negative", "positive", True, 2) for grain in "mhd"]
        assert await _cells(connection) == sorted(copies)
    async with engine.begin() as connection:
        await connection.run_sync(lambda c: _migrate(c, "0010", down=True))
        await connection.execute(
            text("UPDATE social_media_posts SET label_sentiment = 'neutral' WHERE post_id = 'e'")
        )  # no trigger left to fire on a table that is gone
        await connection.run_sync(_migrate, "0011")
        assert [cell[5:] for cell in await _cells(connection)] == [
            ("neutral", True, 1),
            ("positive", True, 1),
        ] * 3
