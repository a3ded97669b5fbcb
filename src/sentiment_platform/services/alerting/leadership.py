"""Who may evaluate: a lease with expiry, so one alert monitor writes per deployment.

In Redis mode the API processes compete for a lease (`SET key token NX PX ttl`), renewed
before every check and again right before every write, and released only by its owner
(compare-and-delete). When the leader dies another takes over once the lease expires. In
embedded mode there is one process and no lease.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as redis

from sentiment_platform.bus.lease import RedisLease
from sentiment_platform.config import Settings

LEASE_MIN_TTL_S = 5.0


class Lease(Protocol):
    """What the monitor needs of a lease: whether it holds it, renew-or-take, give it up."""

    held: bool

    async def hold(self) -> bool: ...

    async def release(self) -> None: ...


def lease_for(settings: Settings, client: redis.Redis) -> RedisLease:
    """The alert monitor's lease over the process's Redis client (Redis mode only)."""
    ttl_s = max(LEASE_MIN_TTL_S, 3 * settings.alert_check_interval_s)
    return RedisLease(client, f"{settings.events_channel}:alert-monitor", ttl_s)
