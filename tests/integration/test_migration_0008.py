"""0008 on a store written by 0007: `model_rollups` is backfilled from the posts' copy of
their analysis, so it equals a recount of the posts per minute, hour and day × source ×
model, and what a rebuild writes — on SQLite and PostgreSQL. Unanalysed posts have no
model and are not counted."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.config import Settings
from sentiment_platform.db import MIGRATIONS_DIR, create_engine
from sentiment_platform.models.database import GRAIN_UNITS, ModelRollup, UTCDateTime
from sentiment_platform.services.reporting.aggregator import compute_metrics
from sentiment_platform.store import rollups
from tests.support.databases import scratch_store

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 30, 23, 10, 30, tzinfo=UTC)  # across a day's and an hour's edge
MODELS = ("embedded/minilm-v5", "cardiffnlp/twitter-roberta-base-sentiment-latest", None)
SOURCES = ("twitter", "reddit", "news")
# post i: created 7 min 13 s after post i-1, its model by i % 3 (None: not analysed yet)
ROWS = [
    (f"p{i:03d}", T0 + i * timedelta(minutes=7, seconds=13), SOURCES[i % 4 % 3], MODELS[i % 3])
    for i in range(150)
]


def _upgrade(connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_at_0007(request, tmp_path: Path):
    async with scratch_store(request.param, tmp_path, "m0008") as url:
        engine = create_engine(Settings(database_url=url))
        stamp = bindparam("t", type_=UTCDateTime())
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, "0007")
            for post_id, created_at, source, model in ROWS:
                labels = "'negative', 'anger'" if model else "NULL, NULL"
                await connection.execute(
                    text(
                        "INSERT INTO social_media_posts (post_id, source, content, created_at, "
                        f"ingested_at, sentiment, emotion, model) VALUES (:p, :s, 'text', :t, :t, "
                        f"{labels}, :m)"
                    ).bindparams(stamp),
                    {"p": post_id, "s": source, "t": created_at, "m": model},
                )
        yield engine
        await engine.dispose()


async def _cells(session: AsyncSession) -> list[tuple]:
    return sorted(tuple(row) for row in await session.execute(select(ModelRollup.__table__)))


async def test_model_rollups_are_backfilled_from_the_posts(store_at_0007) -> None:
    engine = store_at_0007
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, "head")

    recount: Counter[tuple] = Counter()
    for _, created_at, source, model in ROWS:
        if model is not None:
            for grain in GRAIN_UNITS:
                recount[(grain, rollups.floor(grain, created_at), source, model)] += 1
    async with AsyncSession(engine) as session:
        migrated = await _cells(session)
        assert migrated == sorted((*key, count) for key, count in recount.items())
        # What a rebuild from the posts writes, and what the metrics name.
        await rollups.rebuild(session)
        assert await _cells(session) == migrated
        metrics = await compute_metrics(session, T0, T0 + timedelta(days=2))
        assert metrics.models == {MODELS[0]: 50, MODELS[1]: 50}
        await session.rollback()
