"""Who may evaluate: a lease with expiry, so one alert monitor writes per deployment.

In Redis mode the API processes compete for a lease (`SET key token NX PX ttl`), renewed
before every check and again right before every write, and released only by its owner
(compare-and-delete). When the leader dies another takes over once the lease expires. In
embedded mode there is one process and no lease (`lease_for` gives None).
"""

from __future__ import annotations

import uuid
from typing import Protocol

import redis.asyncio as redis

from sentiment_platform.config import Settings

LEASE_MIN_TTL_S = 5.0


class Lease(Protocol):
    """What the monitor needs of a lease: whether it holds it, renew-or-take, give it up."""

    held: bool

    async def hold(self) -> bool: ...

    async def release(self) -> None: ...


class RedisLease:
    """A lock with expiry: taken with SET NX PX, renewed and released only by its owner."""

    _RENEW = """
    if redis.call('get', KEYS[1]) == ARGV[1] then
        return redis.call('pexpire', KEYS[1], ARGV[2])
    end
    return 0
    """
    _RELEASE = """
    if redis.call('get', KEYS[1]) == ARGV[1] then
        return redis.call('del', KEYS[1])
    end
    return 0
    """

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self._redis = client
        self.key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._token = uuid.uuid4().hex
        self._renew = client.register_script(self._RENEW)
        self._release = client.register_script(self._RELEASE)
        self.held = False

    async def hold(self) -> bool:
        """Renew the lease if we own it, else try to take it; True while we are the owner."""
        if self.held:
            renewed = await self._renew(keys=[self.key], args=[self._token, self._ttl_ms])
            self.held = bool(renewed)
        if not self.held:
            self.held = bool(await self._redis.set(self.key, self._token, nx=True, px=self._ttl_ms))
        return self.held

    async def release(self) -> None:
        if self.held:
            await self._release(keys=[self.key], args=[self._token])
            self.held = False

    async def close(self) -> None:
        await self._redis.aclose()


def lease_for(settings: Settings, client: redis.Redis) -> RedisLease | None:
    """The alert monitor's lease over `client` in Redis mode; None in embedded mode.

    The caller owns `client` and closes it after the monitor has stopped.
    """
    if not settings.uses_redis:
        return None
    ttl_s = max(LEASE_MIN_TTL_S, 3 * settings.alert_check_interval_s)
    return RedisLease(client, f"{settings.events_channel}:alert-monitor", ttl_s)
