"""The Redis adapters: Streams with one consumer group for posts, pub/sub for events.

Only commands Redis 7.0 has are used. One client (one connection pool) per process is
shared by every Redis user: the bus, the events channel, the rate limiter and the lease.

What a request waits on here (`publish`, `health`, `stats`) has a deadline well under a
client's patience and a circuit breaker (`sentiment_platform.circuit`): a Redis that hangs
costs one request one deadline, and the requests after it are answered at once until a
trial call, once the cool-off has passed, finds it answering. redis-py closes a connection
whose command was cancelled mid-flight, so the pool never hands out one with a stale reply
on it. The worker's calls (reads that block, acks, claims) keep the socket timeout alone:
the worker backs off on errors and no client is waiting on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sentiment_platform.bus import (
    DEAD_SUFFIX,
    POST_FIELD,
    Entry,
    PendingPage,
    StreamStats,
    dead_fields,
)
from sentiment_platform.bus import scripts as lua
from sentiment_platform.circuit import CircuitBreaker, call_within
from sentiment_platform.config import Settings
from sentiment_platform.domain import Post
from sentiment_platform.errors import BacklogFull, OutcomeUnknown, ServiceUnavailable

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 2.0
PUBLISH_DEADLINE_S = 2.0  # a write answers within it (503 past it), with the limiter's 0.25 s
STATS_DEADLINE_S = 2.0
COOL_OFF_S = 2.0  # after a timeout, calls are refused at once this long, then one trial
OUTAGES = (RedisError, OSError)  # what counts against the breaker (timeouts included)
# Must outlast the longest XREADGROUP BLOCK (Settings caps worker_block_ms at 5 s).
REDIS_SOCKET_TIMEOUT_S = 10.0


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
    """Redis Streams: bounded XADD, XREADGROUP, XACK, XAUTOCLAIM, delivery counts by XPENDING.

    The input stream is never capped: `publish` refuses past `max_backlog` unacknowledged
    entries, and the janitor's `trim` deletes only what the group has acknowledged. `maxlen`
    (REDIS_STREAM_MAXLEN) caps the dead-letter stream alone.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        maxlen: int = 1_000_000,
        max_backlog: int = 1_000_000,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._redis = client
        self.breaker = breaker or CircuitBreaker("redis", 1, COOL_OFF_S)
        self.stream = stream
        self.group = group
        self.dead_stream = stream + DEAD_SUFFIX
        self._maxlen = maxlen
        self.max_backlog = max_backlog
        self._claim_cursor = "0-0"
        self._prune_script = client.register_script(lua.PRUNE_CONSUMERS)
        self._publish_script = client.register_script(lua.PUBLISH_BOUNDED)
        self._stats_script = client.register_script(lua.STATS)
        self._trim_script = client.register_script(lua.TRIM_ACKNOWLEDGED)
        self._touch_script = client.register_script(lua.TOUCH)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> RedisStreamBus:
        return cls(
            client,
            settings.redis_stream_name,
            settings.redis_consumer_group,
            settings.redis_stream_maxlen,
            settings.stream_max_backlog,
        )

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        """One script: the backlog check and every XADD, atomically (all or none). Past its
        deadline the outcome is unknown (`OutcomeUnknown`): the script may run when Redis
        resumes, so the caller retries with the same post_ids."""
        if not posts:
            return []
        payloads = [post.model_dump_json() for post in posts]
        self._refuse_while_open()
        try:
            reply = await call_within(
                self.breaker,
                lambda: self._publish_script(
                    keys=[self.stream], args=[self.group, self.max_backlog, POST_FIELD, *payloads]
                ),
                PUBLISH_DEADLINE_S,
                OUTAGES,
            )
        except (TimeoutError, RedisTimeoutError) as error:
            log.warning(
                "publish timed out, outcome unknown",
                extra={"event": "bus.publish_timeout", "stream": self.stream, "posts": len(posts)},
            )
            raise OutcomeUnknown(retry_after_s=math.ceil(self.breaker.cooldown_s)) from error
        backlog, *ids = reply
        if not ids:
            raise BacklogFull(
                f"the stream holds {backlog} unacknowledged posts "
                f"(STREAM_MAX_BACKLOG={self.max_backlog}); retry shortly"
            )
        return [str(entry_id) for entry_id in ids]

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info(
                "consumer group created",
                extra={"event": "bus.group_created", "stream": self.stream, "group": self.group},
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        rows = await self._read_group(consumer, ">", count, block_ms)
        return [Entry(entry_id, fields) for entry_id, fields in rows]

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> PendingPage:
        rows = await self._read_group(consumer, after, count)
        cursor = rows[-1][0] if rows else None
        return PendingPage(await self._with_deliveries(consumer, rows), cursor)

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self._touch_script(keys=[self.stream], args=[self.group, consumer, *entry_ids])

    async def trim(self) -> int:
        return int(await self._trim_script(keys=[self.stream]))

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
            log.warning(
                "consumer group missing, recreating",
                extra={"event": "bus.group_missing", "stream": self.stream},
            )
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
        if deleted:  # only an XDEL from outside can do this now: nothing trims unacked entries
            log.error(
                "pending entries were deleted before being processed",
                extra={
                    "event": "bus.pending_deleted",
                    "stream": self.stream,
                    "count": len(deleted),
                    "first": deleted[0],
                },
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
        if not self.breaker.allows():
            return f"down: not answering (circuit open, next try in {self._retry_in()} s)"
        try:
            await call_within(self.breaker, self._redis.ping, HEALTH_TIMEOUT_S, OUTAGES)
        except OUTAGES as error:  # TimeoutError is an OSError
            return f"down: {_reason(error)}"
        return "ok"

    async def stats(self) -> StreamStats:
        """XLEN and the group's pending and lag (XINFO GROUPS); a lag Redis cannot tell
        counts every kept entry as unread (an over-count, never an under-count)."""
        self._refuse_while_open()
        length, pending, lag = await call_within(
            self.breaker,
            lambda: self._stats_script(keys=[self.stream], args=[self.group]),
            STATS_DEADLINE_S,
            OUTAGES,
        )
        return StreamStats(int(length), int(pending), int(length) if int(lag) < 0 else int(lag))

    def _refuse_while_open(self) -> None:
        """503 at once while the breaker is open: nothing was sent, so nothing was taken."""
        if not self.breaker.allows():
            retry_in = self._retry_in()
            raise ServiceUnavailable(
                f"Redis is not answering (circuit open): nothing was accepted; "
                f"retry in {retry_in} s",
                retry_after_s=retry_in,
            )

    def _retry_in(self) -> int:
        return max(1, math.ceil(self.breaker.retry_in_s()))


__all__ = ["RedisStreamBus", "redis_client"]
