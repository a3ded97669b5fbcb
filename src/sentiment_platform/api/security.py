"""Who may write, and how often anyone may call: API keys and a per-caller rate limit.

Keys are kept only as SHA-256 digests and compared in constant time. The rate limit is a
fixed one-minute window per caller (API key, else client IP: the connection's, or from a
proxy named in FORWARDED_ALLOW_IPS its `X-Forwarded-For`, `proxy_options`), counted in
Redis when the platform runs on Redis, so every API process shares one budget, and in
memory otherwise.

Writes are counted in Redis one by one. Reads are counted in the process and told to Redis
in batches of 1 % of the limit (`READ_BATCH_SHARE`; 12 at the default 1,200 a minute): a
read pays a Redis round trip once in twelve, not every time, and each API process may let
through at most a batch less one that the others have not heard of yet (with two processes,
1,222 reads instead of 1,200 at worst). A limit under 200 a minute batches by one: exact.

Every call to Redis has a deadline of `COUNTER_DEADLINE_S` and a circuit breaker: a Redis that
hangs (a partition, a paused process) costs one request a quarter of a second, and the
limiter then lets calls through uncounted, without asking, until a trial call a second later
finds Redis answering. A rate limit is not worth a request that waits.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as redis
from fastapi.security import APIKeyHeader
from pydantic import SecretStr
from redis.exceptions import RedisError

from sentiment_platform.circuit import CircuitBreaker, CircuitOpen, call_within
from sentiment_platform.config import Settings
from sentiment_platform.errors import TooManyRequests

WINDOW_S = 60
OUTAGE_RETRY_S = 1.0  # the breaker's cool-off: Redis is asked again at most once a second
COUNTER_DEADLINE_S = 0.25  # how long a request waits on the shared counter
READ_BATCH_SHARE = 0.01  # reads told to the shared counter in batches of this share

log = logging.getLogger(__name__)

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of API_KEYS")


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy-header options, from FORWARDED_ALLOW_IPS alone.

    The client address is who the rate limit counts. Left to itself uvicorn believes
    `X-Forwarded-For` from 127.0.0.1 (or from its own reading of the same variable), so any
    local process, or a proxy that passes the header through untouched, could name a fresh
    caller on every request. Unset, no proxy is believed; set, only those addresses are.
    """
    trusted = settings.forwarded_allow_ips
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted}


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The configured keys, as digests; empty means writes are open."""

    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._digests = [digest(key.get_secret_value()) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, presented: str) -> bool:
        candidate = digest(presented)
        # Check every digest, so the time taken says nothing about which one matched.
        matches = [hmac.compare_digest(candidate, known) for known in self._digests]
        return any(matches)


class Counter(Protocol):
    breaker: CircuitBreaker | None  # the shared store's, where there is one

    async def hit(self, bucket: str, window_s: int, calls: int = 1) -> int:
        """Count `calls` in `bucket` (which expires after `window_s`); return the count."""
        ...


class MemoryCounter:
    """One process's counts; windows older than the current one are dropped as they pass."""

    breaker: CircuitBreaker | None = None  # nothing to wait on

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._window: int | None = None

    async def hit(self, bucket: str, window_s: int, calls: int = 1) -> int:
        window = int(time.time() // window_s)
        if window != self._window:
            self._counts.clear()
            self._window = window
        self._counts[bucket] = self._counts.get(bucket, 0) + calls
        return self._counts[bucket]


class RedisCounter:
    """Counts shared by every API process: INCR plus an expiry, in one round trip, within
    `COUNTER_DEADLINE_S`; while its breaker is open, `CircuitOpen` at once."""

    def __init__(self, client: redis.Redis, breaker: CircuitBreaker | None = None) -> None:
        self._redis = client
        self.breaker: CircuitBreaker | None = breaker or CircuitBreaker(
            "redis rate limiter", 1, OUTAGE_RETRY_S
        )

    async def hit(self, bucket: str, window_s: int, calls: int = 1) -> int:
        breaker = self.breaker
        if breaker is None:
            return await self._hit(bucket, window_s, calls)
        breaker.before_call()
        return await call_within(
            breaker,
            lambda: self._hit(bucket, window_s, calls),
            COUNTER_DEADLINE_S,
            (RedisError, OSError),
        )

    async def _hit(self, bucket: str, window_s: int, calls: int) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(bucket, calls)
            pipe.expire(bucket, window_s + 1)
            count, _ = await pipe.execute()
        return int(count)


class BatchedCounter:
    """In front of a shared counter: counts here, and tells the shared counter every `batch`
    calls of a bucket (and on its first), learning the others' count each time. A bucket's
    count here is the shared count last heard plus the calls not yet told."""

    def __init__(self, shared: Counter, batch: int) -> None:
        self.shared = shared
        self.breaker = shared.breaker
        self.batch = max(1, batch)
        self._heard: dict[str, int] = {}  # the shared count, as last heard
        self._untold: dict[str, int] = {}  # calls counted here, not yet told
        self._window: int | None = None

    async def hit(self, bucket: str, window_s: int, calls: int = 1) -> int:
        window = int(time.time() // window_s)
        if window != self._window:
            self._heard.clear()
            self._untold.clear()
            self._window = window
        untold = self._untold.get(bucket, 0) + calls
        heard = self._heard.get(bucket)
        if heard is not None and untold < self.batch:
            self._untold[bucket] = untold
            return heard + untold
        self._untold[bucket] = 0  # told now; calls counted during the round trip stay untold
        try:
            heard = await self.shared.hit(bucket, window_s, untold)
        except BaseException:
            self._untold[bucket] = self._untold.get(bucket, 0) + untold  # not told after all
            raise
        self._heard[bucket] = heard
        return heard + self._untold.get(bucket, 0)


class RateLimiter:
    """Fails open: when the counter's store (Redis) is down or does not answer in time, calls
    go through uncounted — reads keep answering from the database — with one log line per
    outage; the counter's breaker asks the store again at most once a second meanwhile."""

    def __init__(self, counter: Counter, per_minute: int) -> None:
        self.counter = counter  # writes: every call told to the (shared) counter
        self.reads = BatchedCounter(counter, int(per_minute * READ_BATCH_SHARE))
        self.per_minute = per_minute
        self._down_since: float | None = None

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    async def check(self, caller: str, write: bool = True) -> None:
        if not self.enabled:
            return
        now = time.time()
        window = int(now // WINDOW_S)
        try:
            counter = self.counter if write else self.reads
            count = await counter.hit(f"ratelimit:{caller}:{window}", WINDOW_S)
        except (RedisError, OSError, CircuitOpen) as error:  # a timeout is an OSError
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "rate limiter unavailable: calls are not counted until it is back",
                    extra={"event": "ratelimit.fail_open", "error": type(error).__name__},
                )
            return
        if self._down_since is not None and self._store_answers():
            log.info(
                "rate limiter back",
                extra={
                    "event": "ratelimit.restored",
                    "down_s": round(time.monotonic() - self._down_since, 1),
                },
            )
            self._down_since = None
        if count > self.per_minute:
            retry_after = max(1, int((window + 1) * WINDOW_S - now) + 1)
            raise TooManyRequests(
                f"rate limit of {self.per_minute} requests a minute exceeded",
                retry_after_s=retry_after,
            )

    def _store_answers(self) -> bool:
        """Back only once the store itself answered: a read counted here, without asking it,
        says nothing of the outage."""
        breaker = self.counter.breaker
        return breaker is None or breaker.state == "closed"
