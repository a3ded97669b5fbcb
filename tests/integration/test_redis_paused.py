"""Redis hung (SIGSTOP, what a network partition looks like), the API served by uvicorn in
Redis mode with the default rate limit: reads keep answering at once, a write answers 503 +
`Retry-After` within 3 s (the first one saying its outcome is unknown), the next write at
once (the breaker is open); Redis resumed (SIGCONT), the same `post_id` is accepted and the
post is stored exactly once, although the timed-out publish may have landed too.

A private Redis of the test's own is paused, never the shared one. Without deadlines, reads
and writes waited on Redis for tens of seconds: the client's own timeout bounds the test."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from tests.integration.conftest import PG_TEST_URL
from tests.support.pipeline import KeywordAnalyzer, wait_until
from tests.support.private_redis import PrivateRedis, available
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

Sessions = async_sessionmaker[AsyncSession]
CLIENT_TIMEOUT_S = 10.0  # a patient client; the old code kept it waiting past this
READ_FAST_S = 1.0  # "well under a second": the limiter waits 0.25 s at most
WRITE_WITHIN_S = 3.0
UNKNOWN = "outcome unknown: retry with the same post_id"  # the 503's detail, word for word


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.resume()  # a stopped process still dies by SIGKILL; resumed, the server exits clean
    server.remove()


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


async def stored_rows(sessions: Sessions, post_id: str | None = None) -> int:
    query = select(func.count()).select_from(SocialMediaPost)
    if post_id is not None:
        query = query.where(SocialMediaPost.post_id == post_id)
    async with sessions() as session:
        return int((await session.execute(query)).scalar_one())


async def test_a_paused_redis_keeps_reads_fast_and_writes_answer_503_on_sqlite(
    private_redis: PrivateRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'paused.db'}"
    engine = create_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    try:
        await upgrade_schema(engine)
        await paused_then_resumed(private_redis, url, create_session_factory(engine), caplog)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_paused_redis_keeps_reads_fast_and_writes_answer_503_on_postgres(
    private_redis: PrivateRedis, pg_sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    await paused_then_resumed(private_redis, PG_TEST_URL, pg_sessions, caplog)


async def paused_then_resumed(
    private_redis: PrivateRedis, url: str, sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sentiment_platform")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        redis_host="127.0.0.1",
        redis_port=private_redis.port,
    )
    assert settings.rate_limit_per_minute > 0, "the default limit is on: it asks Redis"
    post = {"post_id": "paused-1", "source": "test", "content": "I love it while it hangs"}
    with ThreadedServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=CLIENT_TIMEOUT_S) as http:
            warm = {"post_id": "before-1", "source": "test", "content": "fine"}
            assert (await http.post("/api/posts", json=warm)).status_code == 202
            assert (await http.get("/api/alerts")).status_code == 200

            private_redis.pause()
            try:
                first, took = await timed(http.post("/api/posts", json=post))
                assert first.status_code == 503, first.text
                assert took < WRITE_WITHIN_S, f"the first write took {took:.2f} s"
                assert int(first.headers["Retry-After"]) >= 1
                assert first.json()["detail"] == UNKNOWN

                again, took = await timed(http.post("/api/posts", json=post))
                assert again.status_code == 503, again.text
                assert took < READ_FAST_S, f"the breaker did not answer at once: {took:.2f} s"
                assert int(again.headers["Retry-After"]) >= 1
                assert "circuit open" in again.json()["detail"]

                # Reads: most are counted in the process, and enough of them that the
                # limiter tells Redis (a batch of 12 at the default 1,200 a minute); none
                # waits on Redis longer than the limiter's deadline.
                for _ in range(15):
                    for path in ("/api/alerts", "/api/posts"):
                        answer, took = await timed(http.get(path))
                        assert answer.status_code == 200, answer.text
                        assert took < READ_FAST_S, f"GET {path} took {took:.2f} s"

                # Health asks Redis itself: at most its 2 s deadline, once per cool-off.
                health, took = await timed(http.get("/api/health"))
                assert took < WRITE_WITHIN_S, f"health took {took:.2f} s"
                assert health.status_code == 200 and health.json()["status"] == "degraded"
                assert health.json()["redis"].startswith("down")

                # One line per outage, not one per request: each breaker opened once (the
                # limiter's and the bus's), and the limiter said once that it fails open.
                during = [getattr(record, "event", "") for record in caplog.records]
                assert during.count("circuit.open") == 2, during
                assert during.count("ratelimit.fail_open") == 1, during
            finally:
                private_redis.resume()

            async def accepted() -> bool:
                return (await http.post("/api/posts", json=post)).status_code == 202

            await wait_until(accepted, 10, "the retry with the same post_id to be accepted")
            assert (await http.get("/api/health")).json()["status"] == "ok"

            # The limiter asks Redis again once its cool-off (1 s) is over: a write after
            # that finds it back (the retry above may have come sooner, counted in-process).
            async def limiter_back() -> bool:
                await http.post("/api/posts", json=post)
                return any(
                    getattr(record, "event", "") == "ratelimit.restored"
                    for record in caplog.records
                )

            await wait_until(limiter_back, 10, "the rate limiter to ask Redis again")
            after = [getattr(record, "event", "") for record in caplog.records]
            assert "circuit.closed" in after, after

    # Every entry on the stream analysed and stored: the timed-out publish (if it ran when
    # Redis resumed) and the retry carry the same post_id, stored once.
    client = redis_client(settings)
    bus = RedisStreamBus.from_settings(settings, client)
    config = WorkerConfig(batch_size=200, block_ms=50, claim_idle_ms=400)
    worker = Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), "w", config)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def drained() -> bool:
            return (await bus.stats()).backlog == 0 and await stored_rows(sessions) >= 2

        await wait_until(drained, 30, "the worker to drain the stream")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await client.aclose()
    assert await stored_rows(sessions, "paused-1") == 1
    assert await stored_rows(sessions) == 2


async def test_a_command_cut_off_by_its_deadline_leaves_no_reply_behind(
    private_redis: PrivateRedis,
) -> None:
    """redis-py closes a connection whose command was cancelled, so the pool never hands the
    next caller a connection with the late reply still on it (what `call_within` relies on);
    the command itself runs when Redis resumes, which is why a write's outcome is unknown."""
    client = redis.Redis(port=private_redis.port, decode_responses=True, max_connections=1)
    try:
        await client.set("before", "b")
        private_redis.pause()
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await client.incr("counter")
        finally:
            private_redis.resume()
        assert await client.get("before") == "b", "a stale reply was read"

        async def ran() -> bool:
            return await client.get("counter") == "1"

        await wait_until(ran, 5, "the cut-off INCR to run once Redis resumed")
        assert await client.ping()
    finally:
        await client.aclose()
