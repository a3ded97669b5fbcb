"""The bus posts travel on, and the events channel analysed posts and alerts are announced on.

One interface, two adapters: Redis Streams + pub/sub when `REDIS_HOST` is set, an in-process
equivalent otherwise. Callers never know which one they hold, and both keep the same promise:
an entry read but not acknowledged is delivered again (to its reader's pending read, or to
whoever claims it once it has been idle long enough), so a crash never loses a post.

Only commands Redis 7.0 has are used.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from sentiment_platform.config import Settings
from sentiment_platform.domain import Post

log = logging.getLogger(__name__)

POST_FIELD = "data"  # an entry is {"data": <the Post as JSON>}
DEAD_SUFFIX = ":dead"
HEALTH_TIMEOUT_S = 2.0
# Must outlast the longest XREADGROUP BLOCK (Settings caps worker_block_ms at 5 s).
REDIS_SOCKET_TIMEOUT_S = 10.0
EVENT_QUEUE_SIZE = 10_000
PUBLISH_MANY_LUA = "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end"
# Atomic, so a consumer that reads between the check and the delete cannot lose its entries.
PRUNE_CONSUMERS_LUA = """
local pruned = {}
for _, row in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local consumer = {}
  for i = 1, #row, 2 do consumer[row[i]] = row[i + 1] end
  if consumer['pending'] == 0 and consumer['idle'] >= tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer['name'])
    table.insert(pruned, consumer['name'])
  end
end
return pruned
"""


@dataclass(frozen=True, slots=True)
class Entry:
    """One delivery of a bus message: its id, its raw fields, and how often it was delivered."""

    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1


# The events that travel on the events channel.
POST_ANALYZED = "post.analyzed"  # data: the post item (PostView as JSON)
ALERT = "alert"  # data: the alert item, on fire, re-notification and resolve


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)


def encode_post(post: Post) -> dict[str, str]:
    return {POST_FIELD: post.model_dump_json()}


def decode_post(fields: Mapping[str, str]) -> Post:
    """The post an entry carries; ValueError (pydantic's ValidationError is one) if it has none."""
    if not fields:  # what a pending entry reads as once MAXLEN trimmed it away
        raise ValueError("entry is gone from the stream (trimmed before it was processed)")
    if POST_FIELD not in fields:
        raise ValueError(f"entry has no {POST_FIELD!r} field")
    return Post.model_validate_json(fields[POST_FIELD])


def dead_fields(entry: Entry, error: str) -> dict[str, str]:
    """What a dead letter keeps: the original fields, the error, and where it came from."""
    return entry.fields | {
        "error": error[:2_000],
        "original_id": entry.entry_id,
        "deliveries": str(entry.deliveries),
    }


class Backoff:
    """Exponential delays with jitter, so workers reconnecting together don't stampede."""

    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**self.attempt)
        self.attempt += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class StreamStats:
    length: int  # entries kept in the stream
    pending: int  # delivered to a worker, not yet acknowledged
    lag: int  # not yet delivered to any worker


class Bus(Protocol):
    """A stream with one consumer group: at-least-once delivery, acks, claims, dead letters."""

    stream: str

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        """Append posts to the stream in one round trip; returns their entry ids."""
        ...

    async def ensure_group(self) -> None:
        """Create the consumer group (reading from the stream's start) if it is missing."""
        ...

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` never-delivered entries, waiting up to `block_ms` for the first."""
        ...

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> list[Entry]:
        """This consumer's delivered-but-unacked entries with ids above `after`, redelivered."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None: ...

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries idle at least `min_idle_ms` (a dead consumer's); resumes its scan."""
        ...

    async def dead_letter(self, failures: Sequence[tuple[Entry, str]]) -> None:
        """Copy entries with their error to `<stream>:dead`, then ack them."""
        ...

    async def prune_consumers(self, min_idle_ms: int) -> list[str]:
        """Forget consumers holding nothing and silent for `min_idle_ms` (workers long gone)."""
        ...

    async def health(self) -> str:
        """'ok', 'in-process', or 'down: <reason>' for /api/health."""
        ...

    async def stats(self) -> StreamStats:
        """The stream's backlog, for /metrics."""
        ...

    async def close(self) -> None: ...


class Events(Protocol):
    """Fire-and-forget announcements (post.analyzed, alert) fanned out to every subscriber."""

    async def publish(self, event: Event) -> None: ...

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish several events in one round trip."""
        ...

    def subscribe(self) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...


def create_bus(settings: Settings) -> Bus:
    if settings.uses_redis:
        return RedisStreamBus.from_settings(settings)
    return MemoryBus(stream=settings.redis_stream_name, maxlen=settings.redis_stream_maxlen)


def create_events(settings: Settings) -> Events:
    if settings.uses_redis:
        return RedisEvents(redis_client(settings), settings.events_channel)
    return MemoryEvents()


def redis_client(settings: Settings) -> redis.Redis:
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return redis.Redis(
        host=settings.redis_host or "127.0.0.1",
        port=settings.redis_port,
        db=settings.redis_db,
        password=password,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=30,
        # A quick retry replaces a pooled connection Redis dropped; longer outages are the
        # callers' business (the worker backs off and keeps its entries pending).
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


def _fields(fields: dict[str, str]) -> dict[Any, Any]:
    """redis-py types XADD fields as an invariant dict of every encodable type."""
    return cast(dict[Any, Any], fields)


def _reason(error: BaseException) -> str:
    detail = str(error).strip()
    return f"{type(error).__name__} ({detail[:120]})" if detail else type(error).__name__


def _is_nogroup(error: ResponseError) -> bool:
    return str(error).startswith("NOGROUP")


class RedisStreamBus:
    """Redis Streams: XADD MAXLEN ~, XREADGROUP, XACK, XAUTOCLAIM, delivery counts by XPENDING."""

    def __init__(self, client: redis.Redis, stream: str, group: str, maxlen: int) -> None:
        self._redis = client
        self.stream = stream
        self.group = group
        self.dead_stream = stream + DEAD_SUFFIX
        self._maxlen = maxlen
        self._claim_cursor = "0-0"
        self._prune_script = client.register_script(PRUNE_CONSUMERS_LUA)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStreamBus:
        return cls(
            redis_client(settings),
            settings.redis_stream_name,
            settings.redis_consumer_group,
            settings.redis_stream_maxlen,
        )

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        if not posts:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for post in posts:
                pipe.xadd(self.stream, _fields(encode_post(post)), maxlen=self._maxlen)
            return [str(entry_id) for entry_id in await pipe.execute()]

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("consumer group created stream=%s group=%s", self.stream, self.group)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        rows = await self._read_group(consumer, ">", count, block_ms)
        return [Entry(entry_id, fields) for entry_id, fields in rows]

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> list[Entry]:
        return await self._with_deliveries(consumer, await self._read_group(consumer, after, count))

    async def _read_group(
        self, consumer: str, start: str, count: int, block_ms: int | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        try:
            reply = await self._redis.xreadgroup(
                self.group, consumer, {self.stream: start}, count=count, block=block_ms
            )
        except ResponseError as error:
            if not _is_nogroup(error):
                raise
            # The stream or group vanished (a Redis restarted without persistence, a FLUSH).
            log.warning("consumer group missing, recreating stream=%s", self.stream)
            await self.ensure_group()
            return []
        # RESP2 reply: [[stream, [(id, fields), ...]]]; redis-py types it as a union of shapes.
        return cast(Any, reply)[0][1] if reply else []

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._redis.xack(self.stream, self.group, *entry_ids)

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        try:
            cursor, rows, deleted = await self._redis.xautoclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_ms,
                start_id=self._claim_cursor,
                count=count,
            )
        except ResponseError as error:
            if not _is_nogroup(error):
                raise
            await self.ensure_group()
            return []
        self._claim_cursor = cursor
        if deleted:
            log.error(
                "pending entries were trimmed before being processed stream=%s count=%d first=%s",
                self.stream,
                len(deleted),
                deleted[0],
            )
        return await self._with_deliveries(consumer, rows)

    async def _with_deliveries(
        self, consumer: str, rows: list[tuple[str, dict[str, str]]]
    ) -> list[Entry]:
        """Delivery counts from XPENDING, one pipelined query per entry (one round trip)."""
        if not rows:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id, _fields in rows:
                pipe.xpending_range(
                    self.stream, self.group, entry_id, entry_id, 1, consumername=consumer
                )
            pending = await pipe.execute()
        entries = []
        for (entry_id, fields), found in zip(rows, pending, strict=True):
            # Gone from our pending list means someone else acked or claimed it meanwhile.
            if found:
                entries.append(Entry(entry_id, fields or {}, int(found[0]["times_delivered"])))
        return entries

    async def dead_letter(self, failures: Sequence[tuple[Entry, str]]) -> None:
        if not failures:
            return
        # MULTI/EXEC keeps the order XADD-then-XACK and makes the pair atomic.
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry, error in failures:
                pipe.xadd(self.dead_stream, _fields(dead_fields(entry, error)), maxlen=self._maxlen)
            pipe.xack(self.stream, self.group, *(entry.entry_id for entry, _ in failures))
            await pipe.execute()

    async def prune_consumers(self, min_idle_ms: int) -> list[str]:
        """Default consumer names are host-pid, so each restart leaves one behind in the group."""
        try:
            pruned = await self._prune_script(keys=[self.stream], args=[self.group, min_idle_ms])
        except ResponseError as error:
            if "no such key" in str(error).lower() or _is_nogroup(error):
                return []
            raise
        return [str(name) for name in pruned]

    async def health(self) -> str:
        try:
            await asyncio.wait_for(self._redis.ping(), HEALTH_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as error:
            return f"down: {_reason(error)}"
        return "ok"

    async def stats(self) -> StreamStats:
        """XLEN and the group's entry in XINFO GROUPS (whose `lag` Redis 7.0 reports)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            try:
                length, groups = await pipe.execute()
            except ResponseError:  # no stream yet
                return StreamStats(0, 0, 0)
        group = next((g for g in groups if g["name"] == self.group), None)
        if group is None:
            return StreamStats(length, 0, length)
        return StreamStats(length, int(group["pending"]), int(group.get("lag") or 0))

    async def close(self) -> None:
        await self._redis.aclose()


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
                log.error("pending entry was trimmed before being processed id=%s", seq)
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

    async def close(self) -> None:
        """Nothing to release: the entries live and die with the process."""


def encode_event(event: Event) -> str:
    return orjson.dumps({"type": event.type, "data": event.data}).decode()


def decode_event(raw: str | bytes) -> Event:
    message = orjson.loads(raw)
    return Event(type=message["type"], data=message.get("data") or {})


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

    async def close(self) -> None:
        """Nothing to release."""


class RedisEvents:
    """Redis pub/sub: every API process hears every worker. Subscribers resubscribe on errors."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._redis = client
        self.channel = channel
        self._publish_script = client.register_script(PUBLISH_MANY_LUA)

    async def publish(self, event: Event) -> None:
        await self._redis.publish(self.channel, encode_event(event))

    async def publish_many(self, events: Sequence[Event]) -> None:
        """One EVALSHA for the lot: a command per event cost the worker more than its insert."""
        if events:
            await self._publish_script(args=[self.channel, *map(encode_event, events)])

    def subscribe(self) -> AsyncIterator[Event]:
        return self._listen()

    async def _listen(self) -> AsyncIterator[Event]:
        backoff = Backoff()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    try:
                        event = decode_event(message["data"])
                    except (ValueError, KeyError, TypeError):
                        log.warning("undecodable event skipped channel=%s", self.channel)
                        continue
                    yield event
            except (RedisError, OSError) as error:
                delay = backoff.next_delay()
                log.warning(
                    "events subscription lost channel=%s error=%s retry_in_s=%.2f",
                    self.channel,
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                await pubsub.aclose()

    async def close(self) -> None:
        await self._redis.aclose()
