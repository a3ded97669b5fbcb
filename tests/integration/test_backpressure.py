"""Backpressure instead of loss: the stream is never trimmed past what the group acknowledged,
and past STREAM_MAX_BACKLOG producers get 503 + Retry-After and wait, losing nothing."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.errors import BacklogFull
from sentiment_platform.pipeline.ingester import ApiPublisher
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from tests.support.pipeline import KeywordAnalyzer, counts, make_posts, wait_until
from tests.support.servers import ThreadedServer

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres, pytest.mark.redis]

Sessions = async_sessionmaker[AsyncSession]


def fast_worker(bus: RedisStreamBus, sessions: Sessions, name: str = "w") -> Worker:
    config = WorkerConfig(batch_size=200, block_ms=50, claim_idle_ms=400)
    return Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), name, config)


async def stored_once(sessions: Sessions) -> tuple[int, int]:
    """(distinct post_ids, rows): equal when nothing is stored twice."""
    async with sessions() as session:
        row = (
            await session.execute(
                text("SELECT count(DISTINCT post_id), count(*) FROM social_media_posts")
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_the_bound_refuses_whole_requests_and_trim_keeps_the_unacknowledged(
    redis_settings: Settings, pg_sessions: Sessions
) -> None:
    client = redis_client(redis_settings)
    bus = RedisStreamBus(
        client, redis_settings.redis_stream_name, redis_settings.redis_consumer_group,
        max_backlog=100,
    )  # fmt: skip
    try:
        await bus.publish(make_posts(60, "a"))
        with pytest.raises(BacklogFull) as refused:
            await bus.publish(make_posts(41, "b"))  # 60 + 41 > 100: none of them
        assert refused.value.status_code == 503 and "STREAM_MAX_BACKLOG=100" in refused.value.detail
        assert (await bus.stats()).backlog == 60
        await bus.publish(make_posts(40, "c"))  # exactly full is fine
        await bus.ensure_group()
        read = await bus.read("w", count=30, block_ms=10)
        await bus.ack([e.entry_id for e in read[10:]])  # the first 10 stay pending
        assert await bus.trim() == 0, "the oldest pending entry is the stream's first"
        stats = await bus.stats()
        assert (stats.length, stats.pending, stats.lag, stats.backlog) == (100, 10, 70, 80)

        await bus.ack([e.entry_id for e in read[:10]])
        assert await bus.trim() == 29  # acked and below the last delivered entry
        stats = await bus.stats()
        assert (stats.length, stats.pending, stats.lag) == (71, 0, 70)  # lag still known
        rest = await bus.read("w", count=100, block_ms=10)
        assert len(rest) == 70  # every unacknowledged entry is still there
    finally:
        await client.aclose()


async def test_backlog_full_then_a_worker_drains_it_exactly_once(
    redis_settings: Settings, pg_sessions: Sessions
) -> None:
    """Workers stopped, STREAM_MAX_BACKLOG=2000, 3,000 posts offered: the excess gets 503,
    and once a worker starts, every post that got 202 is stored exactly once."""
    settings = redis_settings.model_copy(
        update={"stream_max_backlog": 2_000, "rate_limit_per_minute": 0}
    )
    posts = make_posts(3_000, "bk")
    accepted: list[str] = []
    with ThreadedServer(settings) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            for start in range(0, 3_000, 100):
                body = [p.model_dump(mode="json") for p in posts[start : start + 100]]
                answer = await http.post("/api/posts", json=body)
                if answer.status_code == 202:
                    accepted.extend(answer.json()["post_ids"])
                else:
                    assert answer.status_code == 503, answer.text
                    assert int(answer.headers["Retry-After"]) >= 1
                    assert "STREAM_MAX_BACKLOG=2000" in answer.json()["detail"]
            assert len(accepted) == 2_000
            health = (await http.get("/api/health")).json()
            assert health["backlog"] == 2_000 and health["redis"].startswith("full")
            assert health["status"] == "degraded"
            metrics = (await http.get("/metrics")).text
            assert "sentiment_stream_backlog 2000.0" in metrics

            bus = RedisStreamBus.from_settings(settings, redis_client(settings))
            worker, stop = fast_worker(bus, pg_sessions), asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            try:

                async def drained() -> bool:
                    return await counts(pg_sessions) == (2_000, 2_000)

                async def state() -> str:
                    stream = await bus.stats()
                    return (
                        f"stored {await counts(pg_sessions)}; the worker stored {worker.stored}, "
                        f"dead-lettered {worker.dead_lettered}, done {task.done()}; the stream "
                        f"{stream.length} long, {stream.pending} pending, lag {stream.lag}"
                    )

                await wait_until(drained, 60, "the backlog stored", state)
                await asyncio.sleep(0.5)  # a janitor turn trims what was acknowledged
                health = (await http.get("/api/health")).json()
                assert health["backlog"] == 0 and health["status"] == "ok"
                again = await http.post("/api/posts", json=body)  # refused before, room now
                assert again.status_code == 202
                accepted.extend(again.json()["post_ids"])

                async def that_too() -> bool:
                    return await counts(pg_sessions) == (2_100, 2_100)

                await wait_until(that_too, 30, "the late request stored")
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
    assert await stored_once(pg_sessions) == (2_100, 2_100)
    async with pg_sessions() as session:
        ids = set((await session.execute(text("SELECT post_id FROM social_media_posts"))).scalars())
    assert ids == set(accepted)
    raw = redis.Redis(host="127.0.0.1")
    try:
        assert await raw.xlen(settings.redis_stream_name) < 300, "acknowledged entries trimmed"
    finally:
        await raw.aclose()


async def test_a_producer_waits_out_503s_and_loses_nothing(
    redis_settings: Settings, pg_sessions: Sessions, caplog: pytest.LogCaptureFixture
) -> None:
    settings = redis_settings.model_copy(
        update={"stream_max_backlog": 400, "rate_limit_per_minute": 0}
    )
    caplog.set_level(logging.INFO, "sentiment_platform.pipeline.ingester")
    bus = RedisStreamBus.from_settings(settings, redis_client(settings))
    worker, stop = fast_worker(bus, pg_sessions), asyncio.Event()
    posts = make_posts(1_000, "pw")

    async def send_all(publisher: ApiPublisher) -> None:
        for start in range(0, 1_000, 100):  # the fifth request meets a full backlog
            await publisher.publish(posts[start : start + 100])

    with ThreadedServer(settings) as server:
        publisher = ApiPublisher(server.base_url, max_wait_s=60)
        sending = asyncio.create_task(send_all(publisher))
        try:

            async def refused_once() -> bool:
                return any(getattr(r, "event", "") == "ingest.backpressure" for r in caplog.records)

            await wait_until(refused_once, 10, "the producer to meet the bound")
            task = asyncio.create_task(worker.run(stop))
            await asyncio.wait_for(sending, 60)
        finally:
            await publisher.aclose()

        async def all_stored() -> bool:
            return (await counts(pg_sessions))[0] == 1_000

        try:
            await wait_until(all_stored, 30, "every post stored")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert await stored_once(pg_sessions) == (1_000, 1_000)


async def test_a_lag_redis_cannot_tell_counts_every_kept_entry_never_zero(
    redis_settings: Settings,
) -> None:
    """An XDEL inside the unread part makes Redis 7.0 report the group's lag as null; the
    backlog then counts every entry kept (an over-count), where it used to read 0."""
    client = redis_client(redis_settings)
    bus = RedisStreamBus.from_settings(redis_settings, client)
    try:
        await bus.ensure_group()
        ids = await bus.publish(make_posts(5, "lag"))
        await bus.read("w", count=1, block_ms=10)
        await client.xdel(redis_settings.redis_stream_name, ids[2])
        [group] = await client.xinfo_groups(redis_settings.redis_stream_name)
        assert group["lag"] is None  # what Redis says
        stats = await bus.stats()
        assert (stats.length, stats.pending, stats.lag) == (4, 1, 4)
        assert stats.backlog == 5 >= 4  # the true backlog is 4: never under-counted
    finally:
        await client.aclose()
