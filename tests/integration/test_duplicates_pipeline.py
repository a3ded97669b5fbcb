"""The issue's duplicate acceptance through the worker, not the index alone: 200 tweets, a
retweet and a one-word edit of each, and 1,000 unrelated tweets go through the pipeline; at
least 95 % of the 400 copies are stored `duplicate_of` their original, none of the 1,000 (nor
of the originals) is marked, and the rollups count the copies apart (what `unique=true` reads).
In the embedded default (one worker, the in-process index, SQLite) and in Redis mode (three
workers sharing the index in Redis, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text

from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.bus.redis_events import RedisEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Post
from sentiment_platform.models.database import PostRollup
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis.duplicates import Fingerprint, LocalDuplicateIndex
from sentiment_platform.services.analysis.duplicates_redis import RedisDuplicateIndex
from tests.support.duplicate_corpus import Corpus, build, load_tweets
from tests.support.model_switch import Sessions
from tests.support.pipeline import KeywordAnalyzer, running, wait_until

pytestmark = pytest.mark.asyncio

DAY = timedelta(hours=24)
FAST = WorkerConfig(batch_size=100, block_ms=50, claim_idle_ms=60_000, retry_base_s=0.05)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    tweets = load_tweets()
    if tweets is None:
        pytest.skip("../shared/data/tweeteval is not beside the repository")
    return build(tweets)


async def _stored(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM social_media_posts")) or 0)


async def _feed(bus: MemoryBus | RedisStreamBus, sessions: Sessions, corpus: Corpus) -> None:
    """The originals' half first, stored before the copies' half is sent: with several
    workers a copy must not overtake its original (the index marks whichever came first)."""
    half = len(corpus.posts) - len(corpus.original_of) - 500
    for part in (corpus.posts[:half], corpus.posts):
        fresh = part[await _stored(sessions) :]
        for start in range(0, len(fresh), 200):
            chunk = fresh[start : start + 200]
            await bus.publish([Post(post_id=pid, source="t", content=body) for pid, body in chunk])

        async def done(expected: int = len(part)) -> bool:
            return await _stored(sessions) == expected

        await wait_until(done, 60, f"{len(part)} posts stored")


async def _check(sessions: Sessions, corpus: Corpus) -> None:
    async with sessions() as session:
        rows = await session.execute(text("SELECT post_id, duplicate_of FROM social_media_posts"))
        marks = {post_id: first for post_id, first in rows}
        cells = await session.execute(
            text("SELECT duplicate, sum(count) FROM post_rollups WHERE grain = 'm' GROUP BY 1")
        )
        counted = {bool(duplicate): int(count) for duplicate, count in cells}
    hits = sum(marks[copy] == original for copy, original in corpus.original_of.items())
    assert hits >= 0.95 * len(corpus.original_of), hits
    assert [p for p in corpus.unrelated | corpus.originals if marks[p] is not None] == []
    copies = sum(first is not None for first in marks.values())
    assert counted == {False: len(marks) - copies, True: copies}
    assert counted[False] == len(corpus.originals) + len(corpus.unrelated) + 400 - copies


async def test_copies_are_marked_by_the_embedded_worker(corpus: Corpus, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'dups.db'}")
    engine = create_engine(settings)
    await upgrade_schema(engine)
    sessions = create_session_factory(engine)
    bus = MemoryBus()
    index = LocalDuplicateIndex(DAY)
    worker = Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), "w", FAST, index)
    try:
        async with running([worker]):
            await _feed(bus, sessions, corpus)
        await _check(sessions, corpus)
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.redis
async def test_copies_are_marked_by_three_workers_sharing_the_index_in_redis(
    corpus: Corpus, pg_sessions: Sessions, redis_settings: Settings
) -> None:
    settings = redis_settings
    prefix = f"{settings.redis_stream_name}:dedup:"
    async with pg_sessions() as session, session.begin():
        await session.execute(delete(PostRollup))  # what other tests left in this database
    client = redis_client(settings)
    workers = [
        Worker(
            RedisStreamBus.from_settings(settings, client),
            RedisEvents(client, settings.events_channel),
            pg_sessions,
            KeywordAnalyzer(),
            f"w{i}",
            FAST,
            RedisDuplicateIndex(redis_client(settings), DAY, prefix),
        )
        for i in range(3)
    ]
    try:
        async with running(workers):
            await _feed(RedisStreamBus.from_settings(settings, client), pg_sessions, corpus)
        await _check(pg_sessions, corpus)
        assert sum(1 for worker in workers if worker.stored) >= 2, "the group shares the work"
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class Breaks(LocalDuplicateIndex):
    """The in-process index, failing on one text as a detector bug or a pathological text
    would: only that post's entry may pay for it."""

    async def assign(
        self, posts: Sequence[tuple[str, str, datetime]], found: Sequence[Fingerprint] | None = None
    ) -> list[str | None]:
        if any("BREAKS THE INDEX" in body for _, body, _ in posts):
            raise ValueError("the index cannot take this text")
        return await super().assign(posts, found)


async def test_a_post_that_breaks_the_marking_costs_only_its_own_entry(database) -> None:
    _, sessions = database
    bus = MemoryBus()
    config = WorkerConfig(block_ms=10, max_deliveries=2, retry_base_s=0.01)
    worker = Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), "w", config, Breaks(DAY))
    bodies = [f"a perfectly ordinary post number {i} about the weather" for i in range(7)]
    bodies[3] = "this one BREAKS THE INDEX whatever happens"
    await bus.publish([Post(post_id=f"p{i}", source="t", content=b) for i, b in enumerate(bodies)])

    async def settled() -> bool:
        return len(bus.dead) == 1 and await _stored(sessions) == 6

    async with running([worker]):
        await wait_until(settled, 20, "six posts stored, one dead-lettered")
    [letter] = bus.dead
    assert letter["error"].startswith("language or copy detection: ValueError"), letter
