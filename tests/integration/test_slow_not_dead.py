"""Slow is not dead: a worker keeps the batch it works on claimed, a rate-limited or
circuit-broken provider is waited out without costing deliveries, and a batch the database
times out on is split instead of being retried whole forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Prediction
from sentiment_platform.pipeline import settle
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis.circuit_breaker import CircuitOpen
from sentiment_platform.services.analysis.llm import RateLimited
from tests.support.pipeline import KeywordAnalyzer, counts, make_posts, wait_until

Sessions = async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}")
    engine = create_engine(settings)
    await upgrade_schema(engine)
    yield create_session_factory(engine)
    await engine.dispose()


async def run_until(workers: Sequence[Worker], done: object, timeout_s: float, what: str) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        await wait_until(done, timeout_s, what)  # type: ignore[arg-type]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def test_a_slow_batch_is_kept_claimed_not_stolen(sessions: Sessions) -> None:
    """The batch takes 4x CLAIM_IDLE_MS; another worker's janitor runs all along and must
    find nothing to claim: each post analysed once, no delivery added."""
    bus = MemoryBus()
    slow, quick = KeywordAnalyzer(delay_s=1.2), KeywordAnalyzer()
    config = WorkerConfig(batch_size=50, block_ms=50, claim_idle_ms=300)
    first = Worker(bus, MemoryEvents(), sessions, slow, "slow", config)
    second = Worker(bus, MemoryEvents(), sessions, quick, "quick", config)
    stop = asyncio.Event()
    slow_task = asyncio.create_task(first.run(stop))
    await bus.publish(make_posts(40, "s"))

    async def slow_has_it() -> bool:
        return slow.batches == [40]

    await wait_until(slow_has_it, 5, "the slow worker to take the batch")
    quick_task = asyncio.create_task(second.run(stop))
    try:

        async def stored_all() -> bool:
            return await counts(sessions) == (40, 40)

        await wait_until(stored_all, 10, "the slow batch stored")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(slow_task, quick_task), 10)
    assert quick.batches == [], "the quick worker claimed entries that were being worked on"
    assert slow.batches == [40] and first.dead_lettered == 0


class OutageThenUp(KeywordAnalyzer):
    """Refuses the first `outages` calls as `error`, then answers."""

    def __init__(self, error: Exception, outages: int) -> None:
        super().__init__()
        self.error = error
        self.outages = outages

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        self.batches.append(len(texts))
        if self.outages > 0:
            self.outages -= 1
            raise self.error
        return [self._label(text.lower()) for text in texts]


@pytest.mark.parametrize(
    "error",
    [RateLimited("groq: HTTP 429: slow down"), CircuitOpen("groq: circuit open, next try in 1s")],
    ids=["rate-limited", "circuit-open"],
)
async def test_a_provider_outage_is_waited_out_whole_costing_no_delivery(
    sessions: Sessions, error: Exception
) -> None:
    bus = MemoryBus()
    analyzer = OutageThenUp(error, outages=4)
    config = WorkerConfig(batch_size=30, block_ms=50, max_deliveries=1, retry_base_s=0.05)
    worker = Worker(bus, MemoryEvents(), sessions, analyzer, "w", config)
    await bus.publish(make_posts(30, "r"))

    async def stored_all() -> bool:
        return await counts(sessions) == (30, 30)

    await run_until([worker], stored_all, 20, "the batch stored after the outage")
    # Never split into single posts, never re-read: with MAX_DELIVERIES=1 a counted
    # failure would have sent the posts to the dead letters.
    assert analyzer.batches == [30] * 5
    assert not bus.dead and worker.dead_lettered == 0


async def test_a_batch_the_database_times_out_on_is_split(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = settle.store.save_batch
    sizes: list[int] = []

    class QueryCanceled(Exception):
        sqlstate = "57014"

    async def slow_when_large(session, posts, analyses, marks=None):  # type: ignore[no-untyped-def]
        sizes.append(len(posts))
        if len(posts) > 16:
            raise DBAPIError("INSERT ...", {}, QueryCanceled("canceling statement"))
        return await real_save(session, posts, analyses, marks)

    monkeypatch.setattr(settle.store, "save_batch", slow_when_large)
    bus = MemoryBus()
    config = WorkerConfig(batch_size=100, block_ms=50, max_deliveries=1)
    worker = Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), "w", config)
    await bus.publish(make_posts(100, "t"))

    async def stored_all() -> bool:
        return await counts(sessions) == (100, 100)

    await run_until([worker], stored_all, 20, "the halves stored")
    assert sizes[:3] == [100, 50, 25] and sizes.count(100) == 1  # halved, never retried whole
    assert sum(size for size in sizes if size <= 16) == 100  # each post saved once, in a half
    assert not bus.dead


@pytest.mark.redis
async def test_redis_touch_resets_idle_only_for_entries_still_held(
    redis_settings: Settings,
) -> None:
    client = redis_client(redis_settings)
    bus = RedisStreamBus.from_settings(redis_settings, client)
    try:
        await bus.ensure_group()
        await bus.publish(make_posts(3, "touch"))
        held = await bus.read("slow", count=3, block_ms=10)
        ids = [entry.entry_id for entry in held]
        await asyncio.sleep(0.15)
        await bus.touch("slow", ids)
        assert await bus.claim("other", min_idle_ms=100, count=10) == []
        await asyncio.sleep(0.15)
        claimed = await bus.claim("other", min_idle_ms=100, count=10)
        assert [entry.entry_id for entry in claimed] == ids
        assert all(entry.deliveries == 2 for entry in claimed)  # touching counted none
        await bus.touch("slow", ids)  # no longer its own: nothing is taken back
        owners = await client.xpending_range(
            redis_settings.redis_stream_name, redis_settings.redis_consumer_group, "-", "+", 10
        )
        assert {row["consumer"] for row in owners} == {"other"}
        assert {row["times_delivered"] for row in owners} == {2}
    finally:
        await client.aclose()
