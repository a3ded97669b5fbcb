"""Faults against the real services, each asserting that nothing is lost.

PostgreSQL is a private server of this module's (stopped and started at will); Redis is the
shared one, with a stream of the test's own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
import redis.asyncio as redis
from sqlalchemy import text

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.runtime import open_runtime
from tests.support.pipeline import KeywordAnalyzer, counts, make_posts, wait_until
from tests.support.private_postgres import PrivatePostgres, available
from tests.support.servers import ThreadedServer

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.redis,
    pytest.mark.skipif(available() is not None, reason=str(available())),
]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


@pytest_asyncio.fixture
async def settings(postgres: PrivatePostgres) -> AsyncIterator[Settings]:
    suffix = uuid.uuid4().hex[:10]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=postgres.url,
        redis_host="127.0.0.1",
        redis_stream_name=f"fault_posts_{suffix}",
        redis_consumer_group=f"fault_workers_{suffix}",
        events_channel=f"fault_events_{suffix}",
        db_statement_timeout_ms=300,
        db_pool_size=2,
        rate_limit_per_minute=0,
    )
    # The migrations are an operator's command (`init-db` runs them with an hour): under the
    # requests' 300 ms a cold private server on a loaded box could cancel one in CI.
    engine = create_engine(settings.model_copy(update={"db_statement_timeout_ms": 60_000}))
    await upgrade_schema(engine)
    async with engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE social_media_posts, sentiment_analysis, alerts RESTART IDENTITY CASCADE")
        )
    await engine.dispose()
    yield settings
    client = redis.Redis(host="127.0.0.1")
    await client.delete(settings.redis_stream_name, f"{settings.redis_stream_name}:dead")
    await client.aclose()


async def test_postgres_restart_during_ingestion_loses_nothing(
    postgres: PrivatePostgres, settings: Settings
) -> None:
    async with open_runtime(settings) as runtime:
        worker = Worker(
            runtime.bus,
            runtime.events,
            runtime.session_factory,
            KeywordAnalyzer(),
            "fault-worker",
            WorkerConfig(batch_size=100, block_ms=100, claim_idle_ms=5_000, retry_base_s=0.1),
        )
        stop = asyncio.Event()
        worker_task = asyncio.create_task(worker.run(stop))
        posts = make_posts(1_000, tag="pgr")
        try:
            with ThreadedServer(settings) as server:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
                    for batch in range(0, 300, 100):
                        body = [p.model_dump(mode="json") for p in posts[batch : batch + 100]]
                        assert (await client.post("/api/posts", json=body)).status_code == 202

                    await asyncio.to_thread(postgres.stop)
                    started = time.monotonic()
                    down = await client.get("/api/posts")
                    assert down.status_code == 503, down.text
                    assert time.monotonic() - started < 5
                    health = await client.get("/api/health")
                    assert health.status_code == 503 and health.json()["status"] == "down"
                    # The bus still takes posts while the store is away.
                    for batch in range(300, 1_000, 100):
                        body = [p.model_dump(mode="json") for p in posts[batch : batch + 100]]
                        assert (await client.post("/api/posts", json=body)).status_code == 202
                    await asyncio.sleep(1.0)  # the worker meets the outage and backs off
                    await asyncio.to_thread(postgres.start)

                    async def all_stored() -> bool:
                        try:
                            return await counts(runtime.session_factory) == (1_000, 1_000)
                        except Exception:  # noqa: BLE001 - the pool is reconnecting
                            return False

                    await wait_until(all_stored, 60, "every post stored after the restart")
                    page = await client.get("/api/posts", params={"limit": 1})
                    assert page.status_code == 200 and page.json()["total"] == 1_000
                    assert (await client.get("/api/health")).json()["database"] == "ok"
        finally:
            stop.set()
            await asyncio.wait_for(worker_task, 30)
    assert worker.stored == 1_000 and worker.dead_lettered == 0


async def test_a_blocked_table_is_a_fast_503_not_a_pile_up(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        with ThreadedServer(settings) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                async with engine.connect() as blocker:
                    await blocker.execute(text("SET statement_timeout = 0"))
                    await blocker.execute(
                        text("LOCK TABLE social_media_posts IN ACCESS EXCLUSIVE MODE")
                    )
                    started = time.monotonic()
                    answers = await asyncio.gather(*(client.get("/api/posts") for _ in range(20)))
                    elapsed = time.monotonic() - started
                    await blocker.rollback()
                assert {answer.status_code for answer in answers} == {503}
                assert "database is unavailable" in answers[0].json()["detail"]
                assert elapsed < 10, f"20 blocked reads took {elapsed:.1f}s to be refused"
                assert (await client.get("/api/posts")).status_code == 200
    finally:
        await engine.dispose()
