"""A redelivered post is acknowledged but not announced or counted again (SQLite and
PostgreSQL): `/ws` clients see each analysed post once."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus import POST_ANALYZED
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from tests.support.pipeline import KeywordAnalyzer, make_posts


async def test_a_post_stored_before_is_acked_not_announced_again(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    _, sessions = database
    bus, events = MemoryBus(), MemoryEvents()
    worker = Worker(bus, events, sessions, KeywordAnalyzer(), "w", WorkerConfig(block_ms=10))
    announced = events.subscribe()
    stop = asyncio.Event()
    posts = make_posts(3, tag="once")

    await bus.publish(posts)
    await worker.handle(await bus.read("w", 100, 10), stop)
    await bus.publish(posts[:2])  # a producer retried two of them
    await worker.handle(await bus.read("w", 100, 10), stop)

    seen = []
    while True:
        try:
            event = await asyncio.wait_for(announced.__anext__(), 0.05)
        except TimeoutError:
            break
        assert event.type == POST_ANALYZED
        seen.append(event.data["post_id"])
    assert sorted(seen) == sorted(post.post_id for post in posts)
    assert (await bus.stats()).pending == 0  # the repeats were acknowledged all the same
    assert worker.stored == 5
