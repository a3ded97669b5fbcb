"""The in-process adapters of the embedded default: one group's stream, and fan-out events."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sentiment_platform.bus import Entry, Event, StreamStats, dead_fields, encode_post
from sentiment_platform.domain import Post

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 10_000


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int


def _entry_id(seq: int) -> str:
    return f"0-{seq}"


def _seq(entry_id: str) -> int:
    return int(entry_id.rpartition("-")[2])


class MemoryBus:
    """The embedded bus: Redis Streams semantics for one consumer group inside one process.

    Acked entries are dropped at once (there is only one group), so memory holds what is
    unread or pending; `maxlen` trims the oldest beyond that, as `MAXLEN` does on Redis.
    """

    def __init__(self, stream: str = "social_posts", maxlen: int = 1_000_000) -> None:
        self.stream = stream
        self._maxlen = maxlen
        self._entries: dict[int, dict[str, str]] = {}
        self._unread: deque[int] = deque()
        self._pending: dict[int, _Pending] = {}
        self._last_seq = 0
        self._claim_cursor = 0
        self._arrived = asyncio.Event()
        self.dead: deque[dict[str, str]] = deque(maxlen=maxlen)

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        ids = []
        for post in posts:
            self._last_seq += 1
            self._entries[self._last_seq] = encode_post(post)
            self._unread.append(self._last_seq)
            ids.append(_entry_id(self._last_seq))
        while len(self._entries) > self._maxlen:
            del self._entries[next(iter(self._entries))]
        if ids:
            self._arrived.set()
        return ids

    async def ensure_group(self) -> None:
        """The one group exists from the start."""

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        deadline = time.monotonic() + block_ms / 1000
        while not self._unread:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return []
        entries: list[Entry] = []
        now = time.monotonic()
        while self._unread and len(entries) < count:
            seq = self._unread.popleft()
            fields = self._entries.get(seq)
            if fields is None:  # trimmed before anyone read it
                continue
            self._pending[seq] = _Pending(consumer, now, 1)
            entries.append(Entry(_entry_id(seq), dict(fields)))
        return entries

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> list[Entry]:
        start = _seq(after)
        mine = sorted(
            seq for seq, p in self._pending.items() if p.consumer == consumer and seq > start
        )
        return [self._redeliver(seq, consumer) for seq in mine[:count]]

    def _redeliver(self, seq: int, consumer: str) -> Entry:
        pending = self._pending[seq]
        pending.consumer = consumer
        pending.delivered_at = time.monotonic()
        pending.deliveries += 1
        return Entry(_entry_id(seq), dict(self._entries.get(seq, {})), pending.deliveries)

    async def ack(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            seq = _seq(entry_id)
            if self._pending.pop(seq, None) is not None:
                self._entries.pop(seq, None)

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Like XAUTOCLAIM: scans at most 10×count pending entries from the kept cursor."""
        idle_before = time.monotonic() - min_idle_ms / 1000
        claimed: list[Entry] = []
        next_cursor = 0
        candidates = sorted(seq for seq in self._pending if seq >= self._claim_cursor)
        for scanned, seq in enumerate(candidates):
            if len(claimed) == count or scanned == count * 10:
                next_cursor = seq
                break
            if seq not in self._entries:
                del self._pending[seq]
                log.error(
                    "pending entry was trimmed before being processed",
                    extra={"event": "bus.pending_trimmed", "entry_id": _entry_id(seq)},
                )
            elif self._pending[seq].delivered_at <= idle_before:
                claimed.append(self._redeliver(seq, consumer))
        self._claim_cursor = next_cursor
        return claimed

    async def dead_letter(self, failures: Sequence[tuple[Entry, str]]) -> None:
        for entry, error in failures:
            self.dead.append(dead_fields(entry, error))
        await self.ack([entry.entry_id for entry, _ in failures])

    async def prune_consumers(self, min_idle_ms: int) -> list[str]:
        """Consumers exist here only through their pending entries: nothing to forget."""
        return []

    async def health(self) -> str:
        return "in-process"

    async def stats(self) -> StreamStats:
        return StreamStats(len(self._entries), len(self._pending), len(self._unread))


class _Subscription:
    """One subscriber's queue; a slow subscriber loses its oldest events, never blocks others."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(EVENT_QUEUE_SIZE)

    def put(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()


class MemoryEvents:
    """In-process fan-out: every live subscription gets every event published after it began."""

    def __init__(self) -> None:
        # Weak: a subscriber that stops iterating and is dropped stops receiving by itself.
        self._subscriptions: weakref.WeakSet[_Subscription] = weakref.WeakSet()

    async def publish(self, event: Event) -> None:
        for subscription in list(self._subscriptions):
            subscription.put(event)

    async def publish_many(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.publish(event)

    def subscribe(self) -> AsyncIterator[Event]:
        subscription = _Subscription()
        self._subscriptions.add(subscription)
        return subscription
