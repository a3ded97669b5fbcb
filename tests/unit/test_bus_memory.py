"""The embedded bus keeps the Redis Streams promises: unacked entries come back, nothing is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sentiment_platform.bus import Event, decode_post
from sentiment_platform.bus.journal import Journal
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.domain import Post
from sentiment_platform.errors import BacklogFull, ServiceUnavailable


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

    again = (await bus.read_pending("a", count=10)).entries
    assert [e.entry_id for e in again] == [delivered[0].entry_id, delivered[2].entry_id]
    assert [e.deliveries for e in again] == [2, 2]
    assert (await bus.read_pending("b", count=10)).entries == []
    after_first = (await bus.read_pending("a", count=10, after=again[0].entry_id)).entries
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
    assert (await bus.read_pending("dead", count=10)).entries == []
    assert len((await bus.read_pending("alive", count=10)).entries) == 4


async def test_dead_letter_keeps_the_error_and_fields_and_acks() -> None:
    bus = MemoryBus()
    await bus.publish(_posts(1))
    [entry] = await bus.read("a", count=1, block_ms=10)
    await bus.dead_letter([(entry, "boom")])
    assert (await bus.read_pending("a", count=10)).entries == []
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


async def test_past_its_entry_bound_publish_refuses_and_keeps_everything() -> None:
    bus = MemoryBus(max_backlog=3)
    await bus.publish(_posts(3))
    with pytest.raises(BacklogFull) as refused:
        await bus.publish(_posts(1, "q"))
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"]
    entries = await bus.read("a", count=10, block_ms=10)
    assert [decode_post(e.fields).post_id for e in entries] == ["p0", "p1", "p2"]
    assert (await bus.stats()).backlog == 3  # read is not acknowledged
    await bus.ack([entries[0].entry_id])
    await bus.publish(_posts(1, "q"))  # room again: one acknowledged
    assert (await bus.stats()).backlog == 3


async def test_the_byte_bound_refuses_a_request_that_would_pass_it_whole() -> None:
    bus = MemoryBus(max_bytes=2_000)
    big = [Post(post_id=f"b{i}", source="t", content="x" * 600) for i in range(5)]
    await bus.publish(big[:2])  # ~1.4 kB
    with pytest.raises(BacklogFull, match="EMBEDDED_QUEUE_BYTES"):
        await bus.publish(big[2:4])
    assert (await bus.stats()).backlog == 2  # all or none: nothing of the refused request
    [first, second] = await bus.read("a", count=10, block_ms=10)
    await bus.ack([first.entry_id, second.entry_id])
    await bus.publish(big[2:4])
    assert await bus.health() == "in-process"
    # An empty queue takes any one request, so a large one is never refused forever.
    alone = MemoryBus(max_bytes=2_000)
    await alone.publish(big)
    assert alone.queued_bytes > 2_000
    assert (await alone.health()).startswith("full:")  # health says degraded meanwhile


async def test_the_journal_keeps_unacked_entries_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    bus = MemoryBus(journal=Journal(path))
    await bus.publish(_posts(4))
    [first, *_] = await bus.read("a", count=2, block_ms=10)
    await bus.ack([first.entry_id])
    bus.close()  # as good as a crash: nothing else was flushed

    again = MemoryBus(journal=Journal(path))
    entries = await again.read("a", count=10, block_ms=10)
    assert [decode_post(e.fields).post_id for e in entries] == ["p1", "p2", "p3"]
    later = await again.publish(_posts(1, "n"))
    assert later[0] not in {e.entry_id for e in entries}  # numbering continues
    again.close()


async def test_journaled_dead_letters_survive_a_restart_and_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    bus = MemoryBus(maxlen=2, journal=Journal(path))
    await bus.publish(_posts(4))
    entries = await bus.read("a", count=4, block_ms=10)
    await bus.dead_letter([(entry, f"bad {i}") for i, entry in enumerate(entries[:3])])
    bus.close()

    again = MemoryBus(maxlen=2, journal=Journal(path))
    [left] = (await again.read("a", count=10, block_ms=10)) or [None]
    assert left is not None and decode_post(left.fields).post_id == "p3"
    assert [letter["error"] for letter in again.dead] == ["bad 1", "bad 2"]  # the newest 2
    again.close()


async def test_touch_keeps_a_slow_consumers_entries_from_the_janitor() -> None:
    bus = MemoryBus()
    await bus.publish(_posts(2))
    held = await bus.read("slow", count=2, block_ms=10)
    await asyncio.sleep(0.05)
    await bus.touch("slow", [e.entry_id for e in held])
    assert await bus.claim("other", min_idle_ms=40, count=10) == []
    await asyncio.sleep(0.05)
    assert len(await bus.claim("other", min_idle_ms=40, count=10)) == 2
    await bus.touch("slow", [e.entry_id for e in held])  # no longer its own: left alone
    assert (await bus.read_pending("slow", count=10)).entries == []


async def test_memory_events_fan_out_to_every_subscriber() -> None:
    events = MemoryEvents()
    first, second = events.subscribe(), events.subscribe()
    await events.publish_many([Event("post.analyzed", {"n": 1}), Event("alert", {"n": 2})])
    for subscription in (first, second):
        received = [await asyncio.wait_for(anext(subscription), 1) for _ in range(2)]
        assert [e.type for e in received] == ["post.analyzed", "alert"]


def test_the_journal_lives_beside_the_sqlite_store_or_where_configured(tmp_path: Path) -> None:
    from sentiment_platform.config import Settings
    from sentiment_platform.runtime import embedded_queue_path

    def path_for(**settings: object) -> Path | None:
        return embedded_queue_path(Settings(_env_file=None, **settings))  # type: ignore[call-arg]

    assert path_for() == Path("sentiment.queue.db")
    assert path_for(database_url=f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.queue.db"
    assert path_for(database_url="sqlite+aiosqlite:///:memory:") is None
    assert path_for(database_url="postgresql://db/x") is None
    assert path_for(database_url="postgresql://db/x", embedded_queue_path="/var/q.db") == Path(
        "/var/q.db"
    )


async def test_a_journal_that_cannot_be_written_refuses_with_503_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "q.db")
    bus = MemoryBus(journal=journal)
    await bus.publish(_posts(1))
    journal.close()  # as good as a disk that stopped taking writes
    with pytest.raises(ServiceUnavailable, match="cannot be written") as refused:
        await bus.publish(_posts(1, "q"))
    assert refused.value.status_code == 503
    assert (await bus.stats()).backlog == 1  # nothing half-taken


async def test_a_write_racing_the_journal_load_is_taken_and_every_post_delivered_once(
    tmp_path: Path,
) -> None:
    """The first write after a restart, while a large journal is still being read back: it
    used to be numbered from zero, over the recovered entries (IntegrityError, a 503)."""
    path = tmp_path / "q.db"
    bus = MemoryBus(journal=Journal(path))
    for chunk in range(10):
        await bus.publish(_posts(5_000, f"old{chunk}-"))
    bus.close()  # 50,000 unacknowledged: loading them back takes a while

    again = MemoryBus(journal=Journal(path))
    reader = asyncio.create_task(again.read("w", count=1_000, block_ms=5_000))  # starts the load
    await asyncio.sleep(0)  # the load is under way, off the loop
    taken = await again.publish(_posts(3, "new"))
    assert len(taken) == 3
    delivered = [decode_post(entry.fields).post_id for entry in await reader]
    while entries := await again.read("w", count=5_000, block_ms=10):
        delivered += [decode_post(entry.fields).post_id for entry in entries]
        await again.ack([entry.entry_id for entry in entries])
    expected = {f"old{chunk}-{i}" for chunk in range(10) for i in range(5_000)}
    assert len(delivered) == len(set(delivered)) == 50_003  # none doubled
    assert set(delivered) == expected | {"new0", "new1", "new2"}  # none lost
    again.close()
