"""The stream pipeline end to end on the real Redis and PostgreSQL, and embedded in-process:
every post stored and announced exactly once, poison entries dead-lettered, outages survived.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus import POST_ANALYZED
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.bus.redis_events import RedisEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Post, Prediction
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from tests.support.pipeline import (
    KeywordAnalyzer,
    counts,
    make_posts,
    running,
    wait_until,
)

FAST = WorkerConfig(batch_size=100, block_ms=100, claim_idle_ms=1_000, retry_base_s=0.05)
# FAST without the janitor's one second: where the test counts which worker stored what, a
# loaded box that stalls the shared event loop past two of `Held`'s refreshes would let one
# worker claim a live one's batch and both count it (the store and the events stay exact).
SHARED = replace(FAST, claim_idle_ms=30_000)

Sessions = async_sessionmaker[AsyncSession]


@contextlib.asynccontextmanager
async def announced(events: RedisEvents | MemoryEvents) -> AsyncIterator[list[str]]:
    """The post ids of every post.analyzed event published while inside."""
    seen: list[str] = []
    subscription = events.subscribe()

    async def listen() -> None:
        async for event in subscription:
            if event.type == POST_ANALYZED:
                seen.append(event.data["post_id"])

    listener = asyncio.create_task(listen())
    if isinstance(events, RedisEvents):
        client = redis_client(Settings(redis_host="127.0.0.1"))

        async def subscribed() -> bool:
            return bool((await client.pubsub_numsub(events.channel))[0][1])

        await wait_until(subscribed, 5, "the events subscription")
        await client.aclose()
    try:
        yield seen
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def pending_count(settings: Settings) -> int:
    client = redis_client(settings)
    try:
        summary = await client.xpending(settings.redis_stream_name, settings.redis_consumer_group)
    finally:
        await client.aclose()
    return int(summary["pending"])


def stored(sessions: Sessions, expected: int) -> object:
    async def check() -> bool:
        return await counts(sessions) == (expected, expected)

    return check


@pytest.mark.postgres
@pytest.mark.redis
async def test_2000_posts_through_three_workers_stored_and_announced_once(
    pg_sessions: Sessions, redis_settings: Settings
) -> None:
    settings = redis_settings
    producer = RedisStreamBus.from_settings(settings, redis_client(settings))
    events = RedisEvents(redis_client(settings), settings.events_channel)
    workers = [
        Worker(
            RedisStreamBus.from_settings(settings, redis_client(settings)),
            events,
            pg_sessions,
            KeywordAnalyzer(),
            f"w{i}",
            SHARED,
        )
        for i in range(3)
    ]
    posts = make_posts(2_000, "a")
    async with announced(RedisEvents(redis_client(settings), settings.events_channel)) as seen:
        for start in range(0, len(posts), 500):
            await producer.publish(posts[start : start + 500])
        async with running(workers, exit_within_s=15):
            await wait_until(stored(pg_sessions, 2_000), 30, "2,000 posts stored")

            async def all_announced() -> bool:
                return len(seen) >= 2_000

            await wait_until(all_announced, 10, "2,000 events")
    assert await counts(pg_sessions) == (2_000, 2_000)
    assert sorted(seen) == sorted(post.post_id for post in posts)
    assert sum(worker.stored for worker in workers) == 2_000
    assert sum(1 for worker in workers if worker.stored) >= 2, "the group shares the work"
    assert await pending_count(settings) == 0


@pytest.mark.postgres
@pytest.mark.redis
async def test_poison_entries_are_dead_lettered_with_their_error_while_the_rest_flow(
    pg_sessions: Sessions, redis_settings: Settings
) -> None:
    settings = redis_settings
    bus = RedisStreamBus.from_settings(settings, redis_client(settings))
    raw = redis_client(settings)
    stream = settings.redis_stream_name
    good = make_posts(300, "c")
    await bus.publish(good[:150])
    not_json = await raw.xadd(stream, {"data": "{not json"})
    no_content = await raw.xadd(stream, {"data": '{"post_id": "c-x", "source": "test"}'})
    no_data = await raw.xadd(stream, {"text": "a field nobody reads"})
    [explodes] = await bus.publish([Post(post_id="c-boom", source="test", content="EXPLODE")])
    # A producer that bypasses the Post type: PostgreSQL text cannot hold NUL.
    nul_byte = await raw.xadd(stream, {"data": '{"source": "test", "content": "a\\u0000b"}'})
    await bus.publish(good[150:])
    config = WorkerConfig(batch_size=50, block_ms=100, max_deliveries=3, retry_base_s=0.05)
    worker = Worker(bus, MemoryEvents(), pg_sessions, KeywordAnalyzer(), "poison", config)

    async def five_dead() -> bool:
        return await raw.xlen(f"{stream}:dead") >= 5

    async with running([worker], exit_within_s=15):
        await wait_until(five_dead, 20, "five dead letters")
        await wait_until(stored(pg_sessions, 300), 10, "the good posts")

    dead = {fields["original_id"]: fields for _, fields in await raw.xrange(f"{stream}:dead")}
    assert set(dead) == {not_json, no_content, no_data, explodes, nul_byte}
    assert dead[not_json]["data"] == "{not json"  # the original fields travel along
    for malformed in (not_json, no_content, no_data, nul_byte):  # can never parse: dead at once
        assert dead[malformed]["error"].startswith("malformed entry"), dead[malformed]
        assert dead[malformed]["deliveries"] == "1"
    assert "content" in dead[no_content]["error"]
    assert dead[explodes]["error"].startswith("analyzer: RuntimeError")
    assert dead[explodes]["deliveries"] == "3"  # tried max_deliveries times
    assert "NUL" in dead[nul_byte]["error"]
    assert await counts(pg_sessions) == (300, 300)
    assert await pending_count(settings) == 0
    await raw.aclose()


class OwnRedis:
    """A throw-away redis-server on a free port (AOF on, so a restart keeps the stream)."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: Redis shuts down cleanly, AOF flushed
            self.process.wait(10)
            self.process = None


@pytest.mark.postgres
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_workers_ride_out_a_redis_restart_and_lose_nothing(
    pg_sessions: Sessions, redis_settings: Settings, tmp_path: Path
) -> None:
    server = OwnRedis(tmp_path)
    server.start()
    settings = redis_settings.model_copy(update={"redis_port": server.port})
    try:
        producer = RedisStreamBus.from_settings(settings, redis_client(settings))
        await wait_until(lambda: _healthy(producer), 10, "own redis-server up")
        workers = [
            Worker(
                RedisStreamBus.from_settings(settings, redis_client(settings)),
                MemoryEvents(),
                pg_sessions,
                KeywordAnalyzer(),
                f"r{i}",
                FAST,
            )
            for i in range(2)
        ]
        posts = make_posts(1_000, "d")

        async def produce() -> None:
            """A producer that retries a failed batch (a duplicate entry is harmless)."""
            for start in range(0, len(posts), 25):
                while True:
                    try:
                        await producer.publish(posts[start : start + 25])
                        break
                    except (ConnectionError, OSError, Exception):  # noqa: B014 - any outage
                        await asyncio.sleep(0.1)
                await asyncio.sleep(0.01)

        async with running(workers, exit_within_s=15):
            feeding = asyncio.create_task(produce())

            async def some_stored() -> bool:
                return (await counts(pg_sessions))[1] >= 200

            await wait_until(some_stored, 20, "a first part stored")
            server.stop()
            await asyncio.sleep(1.5)
            server.start()
            await asyncio.wait_for(feeding, 30)
            await wait_until(stored(pg_sessions, 1_000), 30, "all 1,000 posts after the restart")
        assert await pending_count(settings) == 0
    finally:
        server.stop()


async def _healthy(bus: RedisStreamBus) -> bool:
    return await bus.health() == "ok"


async def test_embedded_bus_runs_the_same_flow_in_process_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}")
    engine = create_engine(settings)
    await upgrade_schema(engine)
    sessions = create_session_factory(engine)
    bus, events = MemoryBus(), MemoryEvents()
    config = WorkerConfig(batch_size=100, block_ms=50, max_deliveries=2, retry_base_s=0.05)
    worker = Worker(bus, events, sessions, KeywordAnalyzer(), "embedded", config)
    posts = make_posts(500, "e")
    async with announced(events) as seen, running([worker], exit_within_s=15):
        await bus.publish(posts[:250])
        await bus.publish([Post(post_id="e-boom", source="test", content="EXPLODE")])
        await bus.publish(posts[250:])

        async def done() -> bool:
            return len(seen) >= 500 and len(bus.dead) == 1

        await wait_until(done, 20, "500 posts announced and one dead letter")
    assert await counts(sessions) == (500, 500)
    assert sorted(seen) == sorted(post.post_id for post in posts)
    [dead] = bus.dead
    assert dead["error"].startswith("analyzer: RuntimeError")
    assert (await bus.read_pending("embedded", 10)).entries == []
    await engine.dispose()


class DownThenUpAnalyzer(KeywordAnalyzer):
    """Fails every call, probes included, until `up` is set: an outage, not bad posts."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.failed_calls = 0

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        if not self.up:
            self.failed_calls += 1
            raise ConnectionError("model server unreachable")
        return await super().analyze(texts)


async def test_an_analyzer_outage_is_waited_out_not_dead_lettered(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'outage.db'}")
    engine = create_engine(settings)
    await upgrade_schema(engine)
    sessions = create_session_factory(engine)
    bus, analyzer = MemoryBus(), DownThenUpAnalyzer()
    config = WorkerConfig(batch_size=20, block_ms=50, max_deliveries=2, retry_base_s=0.05)
    worker = Worker(bus, MemoryEvents(), sessions, analyzer, "outage", config)
    async with running([worker], exit_within_s=15):
        await bus.publish(make_posts(50, "o"))

        async def failing_for_a_while() -> bool:
            return analyzer.failed_calls > 20

        await wait_until(failing_for_a_while, 10, "the analyzer to fail repeatedly")
        analyzer.up = True
        await wait_until(stored(sessions, 50), 20, "all posts once the analyzer is back")
    assert not bus.dead
    await engine.dispose()


@pytest.mark.redis
async def test_consumers_gone_quiet_with_nothing_pending_are_pruned(
    redis_settings: Settings,
) -> None:
    bus = RedisStreamBus.from_settings(redis_settings, redis_client(redis_settings))
    assert await bus.prune_consumers(0) == []  # no stream yet
    await bus.ensure_group()
    await bus.publish(make_posts(2, "g"))
    [done] = await bus.read("ghost", 1, 10)
    await bus.ack([done.entry_id])
    await bus.read("holder", 1, 10)  # keeps its entry pending
    assert await bus.prune_consumers(60_000) == []  # both active a moment ago
    assert await bus.prune_consumers(0) == ["ghost"]
    client = redis_client(redis_settings)
    consumers = await client.xinfo_consumers(
        redis_settings.redis_stream_name, redis_settings.redis_consumer_group
    )
    assert [c["name"] for c in consumers] == ["holder"]
    await client.aclose()
