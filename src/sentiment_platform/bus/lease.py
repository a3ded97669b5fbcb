"""A lock with expiry in Redis (the alert monitor's), renewed and released only by its owner."""

from __future__ import annotations

import uuid

import redis.asyncio as redis


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
