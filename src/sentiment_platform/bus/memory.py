"""The in-process adapters of the embedded default: one group's stream (journaled to a SQLite
file, so what was accepted survives a crash), and fan-out events."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sentiment_platform.bus import POST_FIELD, Entry, Event, PendingPage, StreamStats, dead_fields
from sentiment_platform.bus.journal import Journal
from sentiment_platform.domain import Post
from sentiment_platform.errors import BacklogFull, ServiceUnavailable

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
    unread or pending, and nothing else is ever dropped: past `max_backlog` entries or
    `max_bytes` of them, `publish` refuses with `BacklogFull` (a 503 to the producer). With a
    `journal` every entry is on disk from `publish` until its ack, and read back on start.
    """

    def __init__(
        self,
        stream: str = "social_posts",
        maxlen: int = 1_000_000,
        *,
        max_backlog: int = 1_000_000,
        max_bytes: int = 256 * 1024 * 1024,
        journal: Journal | None = None,
    ) -> None:
        self.stream = stream
        self.max_backlog = max_backlog
        self.max_bytes = max_bytes
        self._journal = journal
        self._loaded = journal is None
        self._loading = asyncio.Lock()
        self._entries: dict[int, dict[str, str]] = {}
        self._bytes = 0
        self._unread: deque[int] = deque()
        self._pending: dict[int, _Pending] = {}
        self._last_seq = 0
        self._claim_cursor = 0
        self._arrived = asyncio.Event()
        self.dead: deque[dict[str, str]] = deque(maxlen=maxlen)  # REDIS_STREAM_MAXLEN

    async def _load(self) -> None:
        """Read the journal back once, before the first use: what a crash left unacked.

        Every caller waits until the load is done, and it is marked done only then: a
        publish that went ahead while the journal was being read numbered its entries from
        zero, over the recovered ones (IntegrityError, a 503 at start), and could have been
        read back a second time by the load itself. A load cut short (its caller cancelled)
        leaves nothing kept, and the next caller loads again."""
        if self._loaded or self._journal is None:
            return
        async with self._loading:
            if self._loaded:
                return
            journal = self._journal
            rows = await asyncio.to_thread(journal.load)
            dead = await asyncio.to_thread(journal.load_dead, self.dead.maxlen or 0)
            self.dead.extend(dead)
            for seq, data in rows:
                self._keep(seq, {POST_FIELD: data})
            if rows:
                self._last_seq = max(self._last_seq, rows[-1][0])
                self._arrived.set()
            self._loaded = True
        if rows:
            log.info(
                "queued posts recovered from the journal",
                extra={"event": "bus.recovered", "count": len(rows), "path": str(journal.path)},
            )

    def _keep(self, seq: int, fields: dict[str, str]) -> None:
        self._entries[seq] = fields
        self._bytes += len(fields.get(POST_FIELD, ""))
        self._unread.append(seq)

    def _drop(self, seq: int) -> None:
        fields = self._entries.pop(seq, None)
        if fields is not None:
            self._bytes -= len(fields.get(POST_FIELD, ""))

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        await self._load()
        if not posts:
            return []
        payloads = [post.model_dump_json() for post in posts]
        size = sum(map(len, payloads))
        if self._entries and (
            len(self._entries) + len(payloads) > self.max_backlog
            or self._bytes + size > self.max_bytes
        ):
            raise BacklogFull(
                f"the in-process queue holds {len(self._entries)} unacknowledged posts, "
                f"{self._bytes} bytes (STREAM_MAX_BACKLOG={self.max_backlog}, "
                f"EMBEDDED_QUEUE_BYTES={self.max_bytes}); retry shortly"
            )
        first = self._last_seq + 1
        self._last_seq += len(payloads)
        if self._journal is not None:
            try:
                await asyncio.to_thread(self._journal.append, first, payloads)
            except sqlite3.Error as error:  # disk full, locked past its timeout: not taken
                raise ServiceUnavailable(
                    f"the in-process queue cannot be written ({type(error).__name__}); "
                    "retry shortly"
                ) from error
        for seq, data in enumerate(payloads, start=first):
            self._keep(seq, {POST_FIELD: data})
        self._arrived.set()
        return [_entry_id(seq) for seq in range(first, first + len(payloads))]

    async def ensure_group(self) -> None:
        """The one group exists from the start."""

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        await self._load()
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
            if fields is None:
                continue
            self._pending[seq] = _Pending(consumer, now, 1)
            entries.append(Entry(_entry_id(seq), dict(fields)))
        return entries

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> PendingPage:
        await self._load()
        start = _seq(after)
        mine = sorted(
            seq for seq, p in self._pending.items() if p.consumer == consumer and seq > start
        )[:count]
        entries = [self._redeliver(seq, consumer) for seq in mine]
        return PendingPage(entries, entries[-1].entry_id if entries else None)

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        now = time.monotonic()
        for entry_id in entry_ids:
            pending = self._pending.get(_seq(entry_id))
            if pending is not None and pending.consumer == consumer:
                pending.delivered_at = now

    async def trim(self) -> int:
        """Acked entries are dropped as they are acked: nothing is left to trim."""
        return 0

    def _redeliver(self, seq: int, consumer: str) -> Entry:
        pending = self._pending[seq]
        pending.consumer = consumer
        pending.delivered_at = time.monotonic()
        pending.deliveries += 1
        return Entry(_entry_id(seq), dict(self._entries.get(seq, {})), pending.deliveries)

    async def ack(self, entry_ids: Sequence[str]) -> None:
        acked = []
        for entry_id in entry_ids:
            seq = _seq(entry_id)
            if self._pending.pop(seq, None) is not None:
                self._drop(seq)
                acked.append(seq)
        if self._journal is not None and acked:
            await asyncio.to_thread(self._journal.remove, acked)

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
            if self._pending[seq].delivered_at <= idle_before:
                claimed.append(self._redeliver(seq, consumer))
        self._claim_cursor = next_cursor
        return claimed

    async def dead_letter(self, failures: Sequence[tuple[Entry, str]]) -> None:
        letters = [(_seq(entry.entry_id), dead_fields(entry, error)) for entry, error in failures]
        if self._journal is not None and letters:
            keep = self.dead.maxlen or len(letters)
            await asyncio.to_thread(self._journal.dead_letter, letters, keep)
        for seq, fields in letters:
            self.dead.append(fields)
            if self._pending.pop(seq, None) is not None:
                self._drop(seq)

    async def prune_consumers(self, min_idle_ms: int) -> list[str]:
        """Consumers exist here only through their pending entries: nothing to forget."""
        return []

    async def health(self) -> str:
        if self._bytes >= self.max_bytes:
            return f"full: {self._bytes} bytes not yet acknowledged (EMBEDDED_QUEUE_BYTES)"
        return "in-process"

    async def stats(self) -> StreamStats:
        unread = len(self._entries) - len(self._pending)
        return StreamStats(len(self._entries), len(self._pending), unread)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


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
