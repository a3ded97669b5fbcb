"""Fixtures of the pipeline tests: a dedicated PostgreSQL database, and unique Redis stream
names per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from tests.support.databases import recreate_postgres_database, scratch_database_url
from tests.support.receiver import Receiver, unused_port

PG_TEST_URL = scratch_database_url("pipeline")
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


@pytest_asyncio.fixture(scope="session", name="pipeline_pg_engine")
async def fixture_pipeline_pg_engine() -> AsyncIterator[AsyncEngine]:
    await recreate_postgres_database(PG_TEST_URL)
    engine = create_engine(Settings(database_url=PG_TEST_URL))
    await upgrade_schema(engine)
    yield engine
    await engine.dispose()
    await recreate_postgres_database(PG_TEST_URL, create=False)


@pytest_asyncio.fixture(name="pg_sessions")
async def fixture_pg_sessions(
    pipeline_pg_engine: AsyncEngine,
) -> async_sessionmaker[AsyncSession]:
    """A session factory on an emptied test database."""
    async with pipeline_pg_engine.begin() as connection:
        await connection.execute(
            text(
                "TRUNCATE social_media_posts, sentiment_analysis, alerts, rule_counts "
                "RESTART IDENTITY CASCADE"
            )
        )
    return create_session_factory(pipeline_pg_engine)


@pytest_asyncio.fixture(name="redis_settings")
async def fixture_redis_settings() -> AsyncIterator[Settings]:
    """Settings with a stream, group and channel of their own, deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        database_url=PG_TEST_URL,
        redis_host=REDIS_HOST,
        redis_port=REDIS_PORT,
        redis_stream_name=f"test_posts_{suffix}",
        redis_consumer_group=f"test_workers_{suffix}",
        events_channel=f"test_events_{suffix}",
    )
    yield settings
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        stream = settings.redis_stream_name
        await client.delete(stream, f"{stream}:dead")
    finally:
        await client.aclose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 that records what webhooks POST to it."""
    running = Receiver(unused_port()).start()
    yield running
    running.stop()
