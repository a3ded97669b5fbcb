"""The shared duplicate index on the real Redis: the issue's acceptance, the same answers as
the in-process index, two workers agreeing on each group's first (one after the other and at
the same time), and its state expiring after the window."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from sentiment_platform.services.analysis.duplicates import LocalDuplicateIndex
from sentiment_platform.services.analysis.duplicates_redis import RedisDuplicateIndex
from sentiment_platform.services.analysis.language import LanguageDetector
from sentiment_platform.services.analysis.text_reading import read_texts
from tests.support.duplicate_corpus import build, load_tweets

pytestmark = pytest.mark.redis

DAY = timedelta(hours=24)
TEXT = "The new update broke my phone again and support still has not answered my ticket"


@pytest_asyncio.fixture(name="prefix")
async def fixture_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own; its keys are deleted afterwards."""
    prefix = f"test-dedup-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = Redis(host="127.0.0.1", port=6379)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1_000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest_asyncio.fixture(name="clients")
async def fixture_clients() -> AsyncIterator[tuple[Redis, Redis]]:
    """Two connections, as two worker processes would hold (one decodes, one does not)."""
    first = Redis(host="127.0.0.1", port=6379, decode_responses=True)
    second = Redis(host="127.0.0.1", port=6379)
    yield first, second
    await first.aclose()
    await second.aclose()


async def _marks(
    index: RedisDuplicateIndex | LocalDuplicateIndex, posts: list[tuple[str, str]]
) -> dict[str, str | None]:
    now = datetime.now(UTC)
    marks: dict[str, str | None] = {}
    for start in range(0, len(posts), 500):
        batch = [(post_id, text, now) for post_id, text in posts[start : start + 500]]
        for (post_id, _, _), mark in zip(batch, await index.assign(batch), strict=True):
            marks[post_id] = mark
    return marks


async def test_the_issue_acceptance_and_the_same_answers_as_in_process(
    clients: tuple[Redis, Redis], prefix: str
) -> None:
    tweets = load_tweets()
    if tweets is None:
        pytest.skip("../shared/data/tweeteval is not beside the repository")
    corpus = build(tweets)
    marks = await _marks(RedisDuplicateIndex(clients[0], DAY, prefix), corpus.posts)
    hits = sum(marks[copy] == original for copy, original in corpus.original_of.items())
    assert hits >= 0.95 * len(corpus.original_of), hits
    assert [post for post in corpus.unrelated if marks[post] is not None] == []
    assert marks == await _marks(LocalDuplicateIndex(DAY), corpus.posts)


async def test_fingerprints_made_with_the_language_are_taken_as_they_are(
    clients: tuple[Redis, Redis], prefix: str
) -> None:
    """`assign(posts, found=read_texts(...).fingerprints)`: the worker's one-pass path."""
    now = datetime.now(UTC)
    edit = TEXT.replace("phone", "laptop")
    texts = [TEXT, "RT @x: " + TEXT, edit, "Merci beaucoup pour la livraison rapide", "ok"]
    posts = [(f"p{n}-é", text, now) for n, text in enumerate(texts)]  # lengths are in bytes
    reading = read_texts(LanguageDetector(), texts)
    assert reading.languages == ["en", "en", "en", "fr", "und"]
    redis_index = RedisDuplicateIndex(clients[0], DAY, prefix)
    local_index = LocalDuplicateIndex(DAY)
    expected = [None, "p0-é", "p0-é", None, None]
    assert await redis_index.assign(posts, found=reading.fingerprints) == expected
    assert await local_index.assign(posts, found=reading.fingerprints) == expected
    assert await redis_index.assign(posts) == await local_index.assign(posts)


async def test_two_workers_share_the_state(clients: tuple[Redis, Redis], prefix: str) -> None:
    one, two = (RedisDuplicateIndex(client, DAY, prefix) for client in clients)
    now = datetime.now(UTC)
    assert await one.assign([("a", TEXT, now)]) == [None]
    edit = TEXT.replace("phone", "laptop")
    assert await two.assign([("b", "RT @x: " + TEXT, now), ("c", edit, now)]) == ["a", "a"]
    assert await one.assign([("d", edit + " !!", now)]) == ["a"]
    assert await two.assign([("a", TEXT, now)]) == [None]  # redelivered: still the first


async def test_concurrent_workers_agree_on_each_groups_first(
    clients: tuple[Redis, Redis], prefix: str
) -> None:
    """Each worker gets a different copy of the same 200 texts at the same moment: whoever
    claims first, every group ends with one first and every other copy pointing to it."""
    indexes = [RedisDuplicateIndex(client, DAY, prefix) for client in clients]
    now = datetime.now(UTC)
    rng = random.Random(31)  # 200 texts of 15 made-up words: no two alike
    texts = [" ".join(f"w{rng.randrange(100_000)}" for _ in range(15)) for _ in range(200)]
    batches = [
        [(f"w0-{n}", text, now) for n, text in enumerate(texts)],
        [(f"w1-{n}", "RT @bot: " + text + " again", now) for n, text in enumerate(texts)],
    ]
    answers = await asyncio.gather(
        *(index.assign(batch) for index, batch in zip(indexes, batches, strict=True))
    )
    for n in range(200):
        first, second = answers[0][n], answers[1][n]
        assert (first, second) in ((None, f"w0-{n}"), (f"w1-{n}", None)), (n, first, second)


async def test_groups_and_keys_expire_after_the_window(
    clients: tuple[Redis, Redis], prefix: str
) -> None:
    window = timedelta(seconds=1)
    index = RedisDuplicateIndex(clients[0], window, prefix)
    assert await index.assign([("a", TEXT, datetime.now(UTC))]) == [None]
    assert await index.assign([("b", TEXT, datetime.now(UTC))]) == ["a"]
    await asyncio.sleep(1.1)
    assert await index.assign([("c", TEXT, datetime.now(UTC))]) == [None]  # a new group
    written = time.monotonic()
    client = clients[1]
    while [key async for key in client.scan_iter(match=f"{prefix}*")]:
        # Unlinked by no later batch, a generation expires at most two windows after its
        # last write (half a window after it has left every window).
        assert time.monotonic() - written < 2 * window.total_seconds() + 0.5
        await asyncio.sleep(0.1)
