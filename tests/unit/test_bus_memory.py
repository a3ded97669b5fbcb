"""The embedded bus keeps the Redis Streams promises: unacked entries come back, nothing is lost."""

from __future__ import annotations

import asyncio

import pytest

from sentiment_platform.bus import Event, MemoryBus, MemoryEvents, decode_post
from sentiment_platform.domain import Post


def _posts(n: int, prefix: str = "p") -> list[Post]:
    return [Post(post_id=f"{prefix}{i}", source="test", content=f"post {i}") for i in range(n)]


async def test_entries_are_delivered_once_to_one_consumer_in_order() -> None:
    bus = MemoryBus()
    ids = await bus.publish(_posts(5))
    first = await bus.read("a", count=3, block_ms=10)
    second = await bus.read("b", count=10, block_ms=10)
    assert [e.entry_id for e in first + second] == ids
    assert [decode_post(e.fields).post_id for e in first] == ["p0", "p1", "p2"]
    assert await bus.read("a", count=10, block_ms=10) == []


async def test_unacked_entries_are_redelivered_to_their_reader_with_counts() -> None:
    bus = MemoryBus()
    await bus.publish(_posts(3))
    delivered = await bus.read("a", count=3, block_ms=10)
    await bus.ack([delivered[1].entry_id])

    again = await bus.read_pending("a", count=10)
    assert [e.entry_id for e in again] == [delivered[0].entry_id, delivered[2].entry_id]
    assert [e.deliveries for e in again] == [2, 2]
    assert await bus.read_pending("b", count=10) == []
    after_first = await bus.read_pending("a", count=10, after=again[0].entry_id)
    assert [e.entry_id for e in after_first] == [delivered[2].entry_id]


async def test_idle_entries_of_a_dead_consumer_are_claimed() -> None:
    bus = MemoryBus()
    await bus.publish(_posts(4))
    orphaned = await bus.read("dead", count=4, block_ms=10)
    assert await bus.claim("alive", min_idle_ms=60_000, count=10) == []

    await asyncio.sleep(0.03)
    first = await bus.claim("alive", min_idle_ms=20, count=3)
    rest = await bus.claim("alive", min_idle_ms=20, count=3)  # the scan resumes at its cursor
    claimed = first + rest
    assert [e.entry_id for e in claimed] == [e.entry_id for e in orphaned]
    assert all(e.deliveries == 2 for e in claimed)
    assert await bus.read_pending("dead", count=10) == []
    assert len(await bus.read_pending("alive", count=10)) == 4


async def test_dead_letter_keeps_the_error_and_fields_and_acks() -> None:
    bus = MemoryBus()
    await bus.publish(_posts(1))
    [entry] = await bus.read("a", count=1, block_ms=10)
    await bus.dead_letter([(entry, "boom")])
    assert await bus.read_pending("a", count=10) == []
    [dead] = bus.dead
    assert dead["error"] == "boom"
    assert dead["original_id"] == entry.entry_id
    assert dead["data"] == entry.fields["data"]


async def test_a_blocked_read_wakes_on_publish() -> None:
    bus = MemoryBus()
    reader = asyncio.create_task(bus.read("a", count=10, block_ms=2_000))
    await asyncio.sleep(0.01)
    await bus.publish(_posts(2))
    entries = await asyncio.wait_for(reader, 1)
    assert len(entries) == 2


async def test_maxlen_trims_the_oldest_like_redis() -> None:
    bus = MemoryBus(maxlen=3)
    await bus.publish(_posts(5))
    entries = await bus.read("a", count=10, block_ms=10)
    assert [decode_post(e.fields).post_id for e in entries] == ["p2", "p3", "p4"]


async def test_memory_events_fan_out_to_every_subscriber() -> None:
    events = MemoryEvents()
    first, second = events.subscribe(), events.subscribe()
    await events.publish_many([Event("post.analyzed", {"n": 1}), Event("alert", {"n": 2})])
    for subscription in (first, second):
        received = [await asyncio.wait_for(anext(subscription), 1) for _ in range(2)]
        assert [e.type for e in received] == ["post.analyzed", "alert"]


async def test_a_pending_entry_trimmed_away_reads_as_gone() -> None:
    bus = MemoryBus(maxlen=2)
    await bus.publish(_posts(1))
    [held] = await bus.read("a", count=1, block_ms=10)
    await bus.publish(_posts(2, "q"))  # pushes the held entry out
    [again] = await bus.read_pending("a", count=10)
    assert again.entry_id == held.entry_id and again.fields == {}
    with pytest.raises(ValueError, match="gone from the stream"):
        decode_post(again.fields)
