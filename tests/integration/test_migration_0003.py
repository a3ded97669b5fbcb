"""0003 on a store written by 0002: analyses re-keyed, labels copied, rollups backfilled,
search indexed; and 0006 after it, the rest of each analysis copied onto its post — on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import bindparam, text

from sentiment_platform.config import Settings
from sentiment_platform.db import MIGRATIONS_DIR, create_engine
from sentiment_platform.models.database import UTCDateTime
from sentiment_platform.store import PostFilter, count_matches, posts_page
from tests.support.databases import scratch_store

pytestmark = pytest.mark.asyncio


def _upgrade(connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


STAMP = bindparam("t", type_=UTCDateTime())
OLD_ROWS = [
    # post_id, source, created_at, sentiment (None: not analysed)
    ("m1", "twitter", "2026-01-15 10:00:05", "negative"),
    ("m2", "twitter", "2026-01-15 10:00:55", "positive"),
    ("m3", "reddit", "2026-01-15 11:30:00", None),
    ("m4", "reddit", "2026-01-16 09:00:00", "negative"),
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def old_store(request, tmp_path: Path):
    async with scratch_store(request.param, tmp_path, "m0003") as url:
        engine = create_engine(Settings(database_url=url))
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "0002")
            for post_id, source, created_at, sentiment in OLD_ROWS:
                await connection.execute(
                    text(
                        "INSERT INTO social_media_posts (post_id, source, content, created_at, "
                        "ingested_at) VALUES (:p, :s, :c, :t, :t)"
                    ).bindparams(STAMP),
                    {
                        "p": post_id,
                        "s": source,
                        "c": f"Delayed flight {post_id}",
                        "t": datetime.fromisoformat(created_at + "+00:00"),
                    },
                )
                if sentiment:
                    await connection.execute(
                        text(
                            "INSERT INTO sentiment_analysis (post_id, sentiment, confidence, "
                            "emotion, emotion_confidence, model, analyzed_at) "
                            "VALUES (:p, :s, 0.9, 'anger', 0.8, 'old', :t)"
                        ).bindparams(STAMP),
                        {
                            "p": post_id,
                            "s": sentiment,
                            "t": datetime.fromisoformat(created_at + "+00:00"),
                        },
                    )
        yield engine
        await engine.dispose()


async def test_upgrade_rekeys_copies_labels_and_backfills_rollups(old_store) -> None:
    async with old_store.begin() as connection:
        await connection.run_sync(_upgrade, "head")
        refs = (
            await connection.execute(
                text(
                    "SELECT p.post_id, a.sentiment, p.sentiment FROM sentiment_analysis a "
                    "JOIN social_media_posts p ON p.id = a.post_ref ORDER BY p.post_id"
                )
            )
        ).all()
        assert refs == [
            ("m1", "negative", "negative"),
            ("m2", "positive", "positive"),
            ("m4", "negative", "negative"),
        ]
        cells = (
            await connection.execute(
                text(
                    "SELECT grain, source, sentiment, sum(count) FROM post_rollups "
                    "GROUP BY grain, source, sentiment ORDER BY 1, 2, 3"
                )
            )
        ).all()
        for grain in ("d", "h", "m"):
            assert [row[1:] for row in cells if row[0] == grain] == [
                ("reddit", "", 1),
                ("reddit", "negative", 1),
                ("twitter", "negative", 1),
                ("twitter", "positive", 1),
            ]
        minutes = (
            await connection.execute(
                text("SELECT count(*) FROM post_rollups WHERE grain = 'm' AND source = 'twitter'")
            )
        ).scalar_one()
        assert minutes == 2  # 10:00:05 and 10:00:55 share a minute, two labels
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(old_store) as session:
        items, _ = await posts_page(session, PostFilter(text="delayed"))
        assert await count_matches(session, PostFilter(text="delayed")) == (4, False)
        assert items[0]["post_id"] == "m4"
        copied = {
            i["post_id"]: (i["confidence"], i["emotion_confidence"], i["model"]) for i in items
        }
        analysed = (0.9, 0.8, "old")
        assert copied == {"m1": analysed, "m2": analysed, "m3": (None,) * 3, "m4": analysed}
        assert await count_matches(session, PostFilter(source="reddit")) == (2, False)
