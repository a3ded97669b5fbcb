"""The worker's two stages (`pipeline/prefetch.py`): batch N+1 is read and marked while batch
N is analysed and saved, and that overlap costs no guarantee: every batch is assigned in the
duplicate index after the one before it (copies point at their originals exactly), nothing
is acked before it is stored, a batch read ahead when the worker is told to stop is finished
before it leaves (nothing it read is left pending), and a batch waiting its turn is kept
claimed.
On SQLite and PostgreSQL, over the in-memory bus."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.domain import Post, Prediction
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis.duplicates import (
    Fingerprint,
    LocalDuplicateIndex,
    PostText,
)
from tests.support.pipeline import KeywordAnalyzer, wait_until

Sessions = async_sessionmaker[AsyncSession]
BATCH = 10
CONFIG = WorkerConfig(batch_size=BATCH, block_ms=20, claim_idle_ms=60_000)


@dataclass
class Span:
    ids: list[str]
    start: float
    end: float = 0.0
    answer: list[str | None] = field(default_factory=list)


class SlowIndex:
    """The in-process index taking `delay_s` an assign (a round trip to Redis), noting each."""

    def __init__(self, delay_s: float) -> None:
        self.index = LocalDuplicateIndex(timedelta(hours=24))
        self.delay_s = delay_s
        self.spans: list[Span] = []

    async def assign(
        self, posts: Sequence[PostText], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        span = Span([post_id for post_id, _, _ in posts], time.monotonic())
        self.spans.append(span)
        await asyncio.sleep(self.delay_s)
        span.answer = self.index.assign_now(posts, found)
        span.end = time.monotonic()
        return span.answer


class TimedAnalyzer(KeywordAnalyzer):
    """The keyword rule taking `delay_s` a batch, noting when each batch ran."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(delay_s)
        self.spans: list[Span] = []

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        span = Span([], time.monotonic())
        self.spans.append(span)
        predictions = await super().analyze(texts)
        span.end = time.monotonic()
        return predictions


def _corpus() -> tuple[list[Post], dict[str, str | None]]:
    """Four batches: ten originals; a copy of each; ten more originals, each copied once in
    its own batch; copies of those. Returns the posts and each one's expected original."""
    rng = random.Random(31)

    def sentence() -> str:
        return " ".join("".join(rng.choices("abcdefghij", k=7)) for _ in range(10))

    first, second = [sentence() for _ in range(BATCH)], [sentence() for _ in range(BATCH // 2)]
    bodies = first + first + [body for body in second for _ in (0, 1)] + second * 2
    posts = [Post(post_id=f"p{i:03d}", source="t", content=body) for i, body in enumerate(bodies)]
    original: dict[str, str] = {}
    expected: dict[str, str | None] = {}
    for post in posts:
        expected[post.post_id] = original.get(post.content)
        original.setdefault(post.content, post.post_id)
    return posts, expected


async def _copies(sessions: Sessions) -> dict[str, str | None]:
    async with sessions() as session:
        rows = await session.execute(text("SELECT post_id, duplicate_of FROM social_media_posts"))
        return {post_id: first for post_id, first in rows}


async def _run_until_stored(worker: Worker, count: int) -> None:
    """Run `worker` until it stored `count` posts (its own count: the PostgreSQL fixture's
    sessions share one connection, not to be read while the worker writes)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))

    async def stored() -> bool:
        return worker.stored == count

    try:
        await wait_until(stored, 30, f"{count} posts stored")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_next_batch_is_marked_while_one_is_analysed_in_order_and_exactly(
    database: tuple[Settings, Sessions],
) -> None:
    _, sessions = database
    bus, index, analyzer = MemoryBus(), SlowIndex(0.2), TimedAnalyzer(0.2)
    worker = Worker(bus, MemoryEvents(), sessions, analyzer, "w", CONFIG, index)
    posts, expected = _corpus()
    await bus.publish(posts)

    await _run_until_stored(worker, len(posts))

    assert await _copies(sessions) == expected
    assert (await bus.stats()).pending == 0 and worker.stored == len(posts)
    # One assign a batch, in the order published: an original is seen before its copies.
    assert [span.ids for span in index.spans] == [
        [post.post_id for post in posts[i : i + BATCH]] for i in range(0, len(posts), BATCH)
    ]
    assert len(analyzer.spans) == len(index.spans) == 4
    for batch in range(3):
        this, ahead = analyzer.spans[batch], index.spans[batch + 1]
        assert index.spans[batch].end <= ahead.start  # marked after the batch before it
        assert ahead.start < this.end  # ... and while that one was being analysed


async def test_a_batch_read_ahead_when_stopping_is_finished_before_the_worker_leaves(
    database: tuple[Settings, Sessions],
) -> None:
    _, sessions = database
    bus, index, events = MemoryBus(), SlowIndex(0.0), MemoryEvents()
    stop = asyncio.Event()

    class StopsOnFirstBatch(KeywordAnalyzer):
        async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
            stop.set()  # while the first batch is in hand and the second is read ahead
            await asyncio.sleep(0.2)
            return await super().analyze(texts)

    posts, expected = _corpus()
    await bus.publish(posts)
    first = Worker(bus, events, sessions, StopsOnFirstBatch(), "w", CONFIG, index)
    await asyncio.wait_for(first.run(stop), 10)

    assert len(index.spans) == 2  # the second batch was read ahead, then stopped reading
    assert set(await _copies(sessions)) == {post.post_id for post in posts[: 2 * BATCH]}
    assert (await bus.stats()).pending == 0  # both finished and acked: nothing left held

    again = Worker(bus, events, sessions, KeywordAnalyzer(), "w", CONFIG, index)
    await _run_until_stored(again, len(posts) - 2 * BATCH)
    assert await _copies(sessions) == expected
    assert (await bus.stats()).pending == 0


async def test_a_batch_waiting_its_turn_is_kept_claimed(
    database: tuple[Settings, Sessions],
) -> None:
    _, sessions = database
    bus, index, analyzer = MemoryBus(), SlowIndex(0.0), TimedAnalyzer(1.5)
    config = WorkerConfig(batch_size=BATCH, block_ms=20, claim_idle_ms=600)  # touched: 0.2 s
    worker = Worker(bus, MemoryEvents(), sessions, analyzer, "w", config, index)
    posts, _ = _corpus()
    await bus.publish(posts[: 2 * BATCH])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def second_marked() -> bool:
            return len(index.spans) == 2

        await wait_until(second_marked, 10, "the second batch read ahead")
        assert len(analyzer.spans) == 1 and not analyzer.spans[0].end
        await asyncio.sleep(0.9)  # idle 0.5 s would be claimable, were it not touched
        assert len(analyzer.spans) == 1 and not analyzer.spans[0].end  # still waiting its turn
        assert await bus.claim("thief", 500, 100) == []
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
