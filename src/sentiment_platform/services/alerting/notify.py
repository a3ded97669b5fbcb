"""The monitor's webhook sender: a task of its own that sends the stored deliveries that are
due (`webhooks.deliver_due`) every `ALERT_CHECK_INTERVAL_S` while the monitor leads, so a
slow receiver (up to `WEBHOOK_TIMEOUT_S` a request) never delays a check. One
`httpx.AsyncClient`, owned here, closed by `aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.config import Settings
from sentiment_platform.services.alerting import webhooks

log = logging.getLogger(__name__)


class Notifier:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._clock = clock
        self._leading = leading
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()  # one round at a time: in order per rule

    async def deliver(self) -> int:
        """One round: send what is due now; returns how many were delivered."""
        if not self._leading():
            return 0
        async with self._lock:
            if self._client is None:
                # Direct, never through HTTP(S)_PROXY: the request goes to the address the
                # check approved (destinations.py), which a proxy would resolve again.
                self._client = httpx.AsyncClient(trust_env=False)
            async with self._session_factory() as session:
                delivered = await webhooks.deliver_due(
                    session, self._client, self._clock(), self._settings
                )
                await session.commit()
            return delivered

    async def run(self, interval_s: float) -> None:
        """Deliver forever; a failed round is logged and retried at the next tick."""
        while True:
            try:
                await self.deliver()
            except Exception as error:  # noqa: BLE001 - the sender must outlive a bad round
                log.warning(
                    "webhook round failed",
                    extra={"event": "webhook.round_failed", "error": type(error).__name__},
                )
            await asyncio.sleep(interval_s)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
