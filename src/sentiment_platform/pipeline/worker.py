"""The stream worker: read a batch and mark it (`prefetch`), analyse it (`settle`), save it
in one transaction, ack it, announce each post (`announce`); the next batch is read and
marked while this one is analysed, saved and acked.

At-least-once all the way: nothing is acked before it is stored (the store is idempotent on
post_id, so a redelivery never duplicates), entries a crashed worker left behind are claimed
by the janitor, and an entry that keeps failing ends in `<stream>:dead` with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus import Bus, Entry, Events
from sentiment_platform.config import Settings
from sentiment_platform.pipeline.announce import announce
from sentiment_platform.pipeline.prefetch import (
    Batch,
    Held,
    Read,
    Reads,
    decoded,
    take_or_drop,
)
from sentiment_platform.pipeline.settle import Settler, log_outage
from sentiment_platform.retry import Backoff, Stopped, retry_until, sleep_unless_stopped
from sentiment_platform.runtime import Runtime
from sentiment_platform.services.analysis.backends import Analyzer
from sentiment_platform.services.analysis.duplicates import DuplicateIndex, LocalDuplicateIndex
from sentiment_platform.telemetry import POSTS_DEAD_LETTERED

log = logging.getLogger(__name__)

T = TypeVar("T")
DEDUP_WINDOW_HOURS = Settings.model_fields["dedup_window_hours"].default


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def is_bus_outage(error: Exception) -> bool:
    return isinstance(error, RedisError | OSError)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    batch_size: int = 500
    block_ms: int = 1_000
    claim_idle_ms: int = 60_000
    max_deliveries: int = 5
    retry_base_s: float = 0.5  # first delay before failed entries are tried again

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        return cls(
            batch_size=settings.worker_batch_size,
            block_ms=settings.worker_block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            max_deliveries=settings.max_deliveries,
        )

    @property
    def claim_interval_s(self) -> float:
        return min(30.0, self.claim_idle_ms / 2000)

    @property
    def prune_idle_ms(self) -> int:
        """A live worker polls every block_ms; ten claim periods of silence is a dead one."""
        return max(10 * self.claim_idle_ms, 60_000)


class Worker:
    """One consumer of the group. Run it with `await Worker(...).run(stop_event)`."""

    def __init__(
        self,
        bus: Bus,
        events: Events,
        session_factory: async_sessionmaker[AsyncSession],
        analyzer: Analyzer,
        name: str | None = None,
        config: WorkerConfig | None = None,
        duplicates: DuplicateIndex | None = None,
    ) -> None:
        self.bus = bus
        self.events = events
        self.name = name or default_consumer_name()
        # The runtime's index (shared in Redis mode); else one of this worker's own.
        if duplicates is None:  # not `or`: an empty in-process index is falsy (`__len__`)
            duplicates = LocalDuplicateIndex(timedelta(hours=DEDUP_WINDOW_HOURS))
        self.settler = Settler(analyzer, session_factory, self.name, duplicates)
        self.config = config or WorkerConfig()
        self.stored = 0
        self.dead_lettered = 0

    @classmethod
    def from_runtime(cls, runtime: Runtime, name: str | None = None) -> Worker:
        if runtime.analyzer is None:
            raise ValueError("a worker needs a runtime opened with an analyzer")
        return cls(
            runtime.bus,
            runtime.events,
            runtime.session_factory,
            runtime.analyzer,
            name,
            WorkerConfig.from_settings(runtime.settings),
            runtime.duplicates,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Drain this consumer's own pending entries, then read new ones until `stop` is set."""
        cfg = self.config
        log.info(
            "worker started",
            extra={
                "event": "worker.start",
                "consumer": self.name,
                "stream": self.bus.stream,
                "batch_size": cfg.batch_size,
                "claim_idle_ms": cfg.claim_idle_ms,
            },
        )
        try:
            await self._bus_call(self.bus.ensure_group, stop, "create group")
        except Stopped:
            return
        await self.settler.start()  # the models the registry has active, loaded first
        try:
            await self._consume(stop)
        finally:
            await self.settler.stop()
        stats = {"stored": self.stored, "dead_lettered": self.dead_lettered}
        log.info("worker stopped", extra={"event": "worker.stop", "consumer": self.name, **stats})

    async def _consume(self, stop: asyncio.Event) -> None:
        """Two stages (`prefetch`): while a batch is analysed, saved and acked, the next one
        is read and marked, where that read cannot meet the batch in hand."""
        cfg = self.config
        self._reads = Reads(next_claim=time.monotonic() + cfg.claim_interval_s)
        bus_backoff = Backoff()
        ahead: asyncio.Task[Batch | None] | None = None
        try:
            while not stop.is_set():
                fetching, ahead = ahead, None
                try:
                    if fetching is None:
                        batch = await self._fetch(self._plan(), stop)
                    else:
                        batch = await fetching
                    bus_backoff.reset()
                except (RedisError, OSError) as error:
                    delay = bus_backoff.next_delay()
                    log_outage(self.name, "bus", error, delay)
                    self._reads.pending_after = "0"  # a lost reply may have left entries pending
                    await sleep_unless_stopped(delay, stop)
                    continue
                except Stopped:
                    break
                if batch is None:
                    await self.settler.idle()
                    continue
                if not stop.is_set():
                    read = self._plan()
                    if self._reads.ahead_safe(read):
                        ahead = asyncio.create_task(self._fetch(read, stop))
                try:
                    retry_deliveries = await self._finish(batch, stop)
                except Stopped:
                    break
                if retry_deliveries:
                    delay = min(30.0, cfg.retry_base_s * 2 ** (retry_deliveries - 1))
                    retry_at = self._reads.retry_at or math.inf
                    self._reads.retry_at = min(retry_at, time.monotonic() + delay)
        finally:
            last = await take_or_drop(ahead, stop) if ahead is not None else None
            if last is not None:  # stopping: the batch read ahead is finished too
                with contextlib.suppress(Stopped):
                    await self._finish(last, stop)

    def _plan(self) -> Read:
        """Which read comes next: the janitor's claim when due, else this consumer's pending
        list (from the start after a restart, an outage or when failed entries are due
        again), else new entries."""
        reads, now = self._reads, time.monotonic()
        if reads.pending_after is None and reads.retry_at is not None and now >= reads.retry_at:
            reads.pending_after, reads.retry_at = "0", None
        if now >= reads.next_claim:
            return Read.CLAIM
        return Read.NEW if reads.pending_after is None else Read.PENDING

    async def _fetch(self, read: Read, stop: asyncio.Event) -> Batch | None:
        """The first stage: read (`read`), decode and mark a batch; None when nothing came."""
        cfg, reads = self.config, self._reads
        if read is Read.CLAIM:
            entries = await self._claim()
            now = time.monotonic()
            reads.next_claim = now if len(entries) == cfg.batch_size else now + cfg.claim_interval_s
        elif read is Read.PENDING:
            after = reads.pending_after or "0"  # set: `_plan` chose the pending list
            page = await self.bus.read_pending(self.name, cfg.batch_size, after)
            entries, reads.pending_after = page.entries, page.cursor
        else:
            block_ms = cfg.block_ms
            if reads.retry_at is not None:
                wait_ms = int((reads.retry_at - time.monotonic()) * 1000)
                block_ms = max(10, min(block_ms, wait_ms))
            entries = await self.bus.read(self.name, cfg.batch_size, block_ms)
        return await self._marked(entries, stop) if entries else None

    async def _marked(self, entries: Sequence[Entry], stop: asyncio.Event) -> Batch:
        started = time.perf_counter()
        items, dead = decoded(entries, self.config.max_deliveries)
        held = Held(self.bus, self.name, entries, self.config.claim_idle_ms / 3000)
        try:
            marked = await self.settler.mark(items, stop)
        except BaseException:
            await held.release()
            raise
        return Batch(entries, marked, dead, held, started)

    async def handle(self, entries: Sequence[Entry], stop: asyncio.Event) -> int:
        """One batch through both stages in turn (what `run` does, without reading ahead)."""
        return await self._finish(await self._marked(entries, stop), stop)

    async def _claim(self) -> list[Entry]:
        """The janitor's turn: take over a dead consumer's entries, delete what the group has
        acknowledged (never anything unacknowledged), forget long-gone consumers."""
        cfg = self.config
        entries = await self.bus.claim(self.name, cfg.claim_idle_ms, cfg.batch_size)
        trimmed = await self.bus.trim()
        if trimmed:
            log.debug(
                "acknowledged entries trimmed",
                extra={"event": "worker.trim", "consumer": self.name, "count": trimmed},
            )
        if entries:
            log.info(
                "claimed entries",
                extra={"event": "worker.claim", "consumer": self.name, "count": len(entries)},
            )
        pruned = await self.bus.prune_consumers(cfg.prune_idle_ms)
        if pruned:
            log.info(
                "consumers pruned",
                extra={"event": "worker.prune", "consumer": self.name, "pruned": pruned},
            )
        return entries

    async def _finish(self, batch: Batch, stop: asyncio.Event) -> int:
        """The second stage: analyse, save, ack, dead-letter, announce. Entries that failed
        but have deliveries left stay pending; returns the highest delivery count among them
        (0: none), which sets the retry delay."""
        entries, dead = batch.entries, batch.dead
        try:
            stored, failed = await self.settler.settle(batch.marked, stop)
        finally:
            await batch.held.release()
        retry = []
        for item, failure in failed:
            for entry in item.entries:
                if entry.deliveries >= self.config.max_deliveries:
                    dead.append((entry, failure))
                else:
                    retry.append(entry)
                    log.warning(
                        "entry failed, will retry",
                        extra={
                            "event": "worker.retry",
                            "consumer": self.name,
                            "entry_id": entry.entry_id,
                            "post_id": item.post.post_id,
                            "deliveries": entry.deliveries,
                            "error": str(failure),
                        },
                    )

        acked = [entry.entry_id for done in stored for entry in done.item.entries]
        await self._bus_call(lambda: self.bus.ack(acked), stop, "ack")
        if dead:
            letters = [(entry, str(failure)) for entry, failure in dead]
            await self._bus_call(lambda: self.bus.dead_letter(letters), stop, "dead-letter")
            for entry, failure in dead:
                log.error(
                    "entry dead-lettered",
                    extra={
                        "event": "worker.dead_letter",
                        "consumer": self.name,
                        "entry_id": entry.entry_id,
                        "deliveries": entry.deliveries,
                        "error": str(failure),
                    },
                )
        self.stored += len(stored)
        self.dead_lettered += len(dead)
        POSTS_DEAD_LETTERED.inc(len(dead))
        await announce(self.events, [done for done in stored if done.new], self.name)
        log.debug(
            "batch done",
            extra={
                "event": "worker.batch",
                "consumer": self.name,
                "batch": len(entries),
                "stored": len(stored),
                "retry": len(retry),
                "dead": len(dead),
                "ms": round((time.perf_counter() - batch.started) * 1000, 1),
            },
        )
        return max((entry.deliveries for entry in retry), default=0)

    async def _bus_call(
        self, action: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str
    ) -> T:
        """Retry a bus call through an outage; on shutdown give up (the entries stay pending)."""
        return await retry_until(
            action,
            retryable=is_bus_outage,
            stop=stop,
            backoff=Backoff(),
            on_retry=lambda error, delay: log_outage(self.name, "bus", error, delay, action=what),
        )


async def run_worker(runtime: Runtime, name: str | None) -> None:
    """The `worker` command: one consumer until SIGTERM/SIGINT, which finish the batch first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await Worker.from_runtime(runtime, name).run(stop)
