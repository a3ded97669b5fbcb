"""Retention: delete posts (and, by cascade, their analyses) older than `RETENTION_DAYS`, in
bounded batches so no statement holds locks for long, and rollup cells older than
`ROLLUP_RETENTION_DAYS`. The rollups outlive the posts, so long-range metrics stay.

`run_retention` is the background loop (one per API process is harmless: each batch
deletes what is there, and a batch another process deleted first is simply smaller).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.config import Settings
from sentiment_platform.domain import utcnow
from sentiment_platform.store import posts, rollups

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Purged:
    posts: int
    rollup_cells: int
    seconds: float


def posts_cutoff(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Posts created before this are deleted (None: RETENTION_DAYS unset, keep all)."""
    if settings.retention_days is None:
        return None
    return rollups.floor("m", (now or utcnow()) - timedelta(days=settings.retention_days))


async def purge_once(
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    now: datetime | None = None,
    max_batches: int | None = None,
) -> Purged:
    """Delete what retention says is too old, one transaction per batch."""
    started = time.perf_counter()
    deleted = cells = batches = 0
    cutoff = posts_cutoff(settings, now)
    while cutoff is not None and (max_batches is None or batches < max_batches):
        async with session_factory() as session, session.begin():
            gone = await posts.delete_posts_before(session, cutoff, settings.retention_batch)
        batches += 1
        deleted += gone
        if gone < settings.retention_batch:
            break
    if settings.rollup_retention_days is not None:
        before = (now or utcnow()) - timedelta(days=settings.rollup_retention_days)
        async with session_factory() as session, session.begin():
            cells = await rollups.purge(session, before)
    return Purged(deleted, cells, time.perf_counter() - started)


async def run_retention(
    session_factory: async_sessionmaker[AsyncSession], settings: Settings, stop: asyncio.Event
) -> None:
    """Every RETENTION_INTERVAL_S until `stop`; a failed round is logged and tried again.
    Started only when RETENTION_DAYS or ROLLUP_RETENTION_DAYS is set."""
    while not stop.is_set():
        try:
            purged = await purge_once(session_factory, settings)
            if purged.posts or purged.rollup_cells:
                log.info(
                    "retention purged",
                    extra={
                        "event": "retention.purged",
                        "posts": purged.posts,
                        "rollup_cells": purged.rollup_cells,
                        "seconds": round(purged.seconds, 3),
                    },
                )
        except Exception as error:  # noqa: BLE001 - the next round tries again
            log.warning(
                "retention failed",
                extra={"event": "retention.failed", "error": type(error).__name__},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.retention_interval_s)
