"""The stream worker: read a batch, analyse it in one model call, save it in one transaction,
ack it, announce each post.

At-least-once all the way: nothing is acked before it is stored (the store is idempotent on
post_id, so a redelivery never duplicates), entries a crashed worker left behind are claimed
by the janitor, and an entry that keeps failing ends in `<stream>:dead` with its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import (
    POST_ANALYZED,
    Backoff,
    Bus,
    Entry,
    Event,
    Events,
    create_bus,
    create_events,
    decode_post,
)
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory
from sentiment_platform.domain import Analysis, Post, PostView, Prediction, utcnow
from sentiment_platform.telemetry import POSTS_ANALYZED, POSTS_DEAD_LETTERED

log = logging.getLogger(__name__)

ANALYZER = "analyzer: "  # prefix of the errors the analyzer raised
PROBE_TEXT = "ok"  # tells a down analyzer from bad posts
# SQLSTATE classes of errors that belong to particular rows (data exception, integrity
# violation): the batch is split to find them, instead of being retried as an outage.
ROW_SQLSTATE_CLASSES = ("22", "23")

T = TypeVar("T")


class Analyzer(Protocol):
    """Anything that labels a batch of texts; the real one runs off the event loop."""

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]: ...


class RowError(Exception):
    """The store refused some row of the batch (a NUL byte, a constraint), not the batch."""


class Stopped(Exception):
    """Shutdown was asked for while an outage was being waited out; entries stay pending."""


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


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


@dataclass(slots=True)
class _Item:
    """One post to analyse, and every entry that carried it (a producer may send one twice)."""

    post: Post
    entries: list[Entry] = field(default_factory=list)


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
    ) -> None:
        self.bus = bus
        self.events = events
        self.session_factory = session_factory
        self.analyzer = analyzer
        self.name = name or default_consumer_name()
        self.config = config or WorkerConfig()
        self.stored = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Drain this consumer's own pending entries, then read new ones until `stop` is set."""
        cfg = self.config
        log.info(
            "worker started consumer=%s stream=%s batch_size=%d claim_idle_ms=%d",
            self.name,
            self.bus.stream,
            cfg.batch_size,
            cfg.claim_idle_ms,
        )
        try:
            await self._until_done(self.bus.ensure_group, stop, "create group")
        except Stopped:
            return
        pending_after: str | None = "0"  # a restarted worker first finishes what it held
        retry_at: float | None = None
        next_claim = time.monotonic() + cfg.claim_interval_s
        bus_backoff = Backoff()
        while not stop.is_set():
            now = time.monotonic()
            if pending_after is None and retry_at is not None and now >= retry_at:
                pending_after, retry_at = "0", None
            try:
                if now >= next_claim:
                    entries = await self.bus.claim(self.name, cfg.claim_idle_ms, cfg.batch_size)
                    full = len(entries) == cfg.batch_size
                    next_claim = now if full else now + cfg.claim_interval_s
                    if entries:
                        log.info("claimed entries consumer=%s count=%d", self.name, len(entries))
                    pruned = await self.bus.prune_consumers(cfg.prune_idle_ms)
                    if pruned:
                        log.info("consumers pruned consumer=%s pruned=%s", self.name, pruned)
                elif pending_after is not None:
                    entries = await self.bus.read_pending(self.name, cfg.batch_size, pending_after)
                    pending_after = entries[-1].entry_id if entries else None
                else:
                    block_ms = cfg.block_ms
                    if retry_at is not None:
                        block_ms = max(10, min(block_ms, int((retry_at - now) * 1000)))
                    entries = await self.bus.read(self.name, cfg.batch_size, block_ms)
                bus_backoff.reset()
            except (RedisError, OSError) as error:
                delay = bus_backoff.next_delay()
                log.warning(
                    "bus unavailable consumer=%s error=%s retry_in_s=%.2f",
                    self.name,
                    type(error).__name__,
                    delay,
                )
                pending_after = "0"  # a lost reply may have left entries in our pending list
                await _sleep(delay, stop)
                continue
            if not entries:
                continue
            try:
                retry_deliveries = await self.handle(entries, stop)
            except Stopped:
                break
            if retry_deliveries:
                delay = min(30.0, cfg.retry_base_s * 2 ** (retry_deliveries - 1))
                retry_at = min(retry_at or math.inf, time.monotonic() + delay)
        log.info(
            "worker stopped consumer=%s stored=%d dead_lettered=%d",
            self.name,
            self.stored,
            self.dead_lettered,
        )

    async def handle(self, entries: Sequence[Entry], stop: asyncio.Event) -> int:
        """Process one batch. Entries that failed but have deliveries left stay pending;
        returns the highest delivery count among them (0: none), which sets the retry delay."""
        started = time.perf_counter()
        items: dict[str, _Item] = {}
        dead: list[tuple[Entry, str]] = []
        for entry in entries:
            if entry.deliveries > self.config.max_deliveries:
                # Delivered again and again without an ack: it crashes whoever reads it.
                dead.append((entry, f"not acknowledged after {entry.deliveries - 1} deliveries"))
                continue
            try:
                post = decode_post(entry.fields)
            except ValueError as error:
                # It will never parse, so retrying it would only delay the dead letter.
                dead.append((entry, f"malformed entry: {_one_line(error)}"))
                continue
            items.setdefault(post.post_id, _Item(post)).entries.append(entry)

        stored, failed = await self._settle_or_wait(list(items.values()), stop)
        retry = []
        for item, reason in failed:
            for entry in item.entries:
                if entry.deliveries >= self.config.max_deliveries:
                    dead.append((entry, reason))
                else:
                    retry.append(entry)
                    log.warning(
                        "entry failed, will retry consumer=%s id=%s deliveries=%d error=%s",
                        self.name,
                        entry.entry_id,
                        entry.deliveries,
                        reason,
                    )

        acked = [entry.entry_id for item, _ in stored for entry in item.entries]
        await self._until_done(lambda: self.bus.ack(acked), stop, "ack")
        if dead:
            await self._until_done(lambda: self.bus.dead_letter(dead), stop, "dead-letter")
            for entry, reason in dead:
                log.error(
                    "entry dead-lettered consumer=%s id=%s deliveries=%d error=%s",
                    self.name,
                    entry.entry_id,
                    entry.deliveries,
                    reason,
                )
        self.stored += len(stored)
        self.dead_lettered += len(dead)
        for _, analysis in stored:
            POSTS_ANALYZED.labels(model=analysis.model).inc()
        POSTS_DEAD_LETTERED.inc(len(dead))
        await self._announce(stored)
        log.debug(
            "batch done consumer=%s entries=%d stored=%d retry=%d dead=%d ms=%.1f",
            self.name,
            len(entries),
            len(stored),
            len(retry),
            len(dead),
            (time.perf_counter() - started) * 1000,
        )
        return max((entry.deliveries for entry in retry), default=0)

    async def _settle_or_wait(
        self, items: list[_Item], stop: asyncio.Event
    ) -> tuple[list[tuple[_Item, Analysis]], list[tuple[_Item, str]]]:
        """Settle the batch. When every post of it failed in the analyzer and a harmless probe
        text fails too, the analyzer is down rather than the posts bad: wait and retry in
        place, so an outage costs no deliveries and sends nothing to the dead letters."""
        backoff = Backoff(0.5, 30.0)
        while True:
            stored, failed = await self._settle(items, stop)
            if stored or not failed or not all(e.startswith(ANALYZER) for _, e in failed):
                return stored, failed
            if await self._analyzer_answers():
                return stored, failed
            if stop.is_set():
                raise Stopped
            delay = backoff.next_delay()
            log.warning(
                "analyzer unavailable consumer=%s posts=%d error=%s retry_in_s=%.2f",
                self.name,
                len(failed),
                failed[0][1],
                delay,
            )
            await _sleep(delay, stop)

    async def _analyzer_answers(self) -> bool:
        try:
            await self.analyzer.analyze([PROBE_TEXT])
        except Exception:  # noqa: BLE001 - any failure means it is down
            return False
        return True

    async def _settle(
        self, items: list[_Item], stop: asyncio.Event
    ) -> tuple[list[tuple[_Item, Analysis]], list[tuple[_Item, str]]]:
        """Analyse and store items; on an error that belongs to some of them, halve and retry
        so one bad post costs its own entry, not its batch."""
        if not items:
            return [], []
        posts = [item.post for item in items]
        try:
            predictions = await self.analyzer.analyze([post.content for post in posts])
            if len(predictions) != len(posts):
                raise ValueError(f"{len(predictions)} predictions for {len(posts)} texts")
        except Exception as error:  # noqa: BLE001 - any analyzer failure is the batch's failure
            return await self._split(items, stop, f"{ANALYZER}{_one_line(error)}")
        analyzed_at = utcnow()
        analyses = [
            Analysis.of(post.post_id, prediction, analyzed_at)
            for post, prediction in zip(posts, predictions, strict=True)
        ]
        try:
            await self._save(posts, analyses, stop)
        except RowError as error:
            return await self._split(items, stop, f"store: {error}")
        return list(zip(items, analyses, strict=True)), []

    async def _split(
        self, items: list[_Item], stop: asyncio.Event, error: str
    ) -> tuple[list[tuple[_Item, Analysis]], list[tuple[_Item, str]]]:
        if len(items) == 1:
            return [], [(items[0], error)]
        middle = len(items) // 2
        stored_a, failed_a = await self._settle(items[:middle], stop)
        stored_b, failed_b = await self._settle(items[middle:], stop)
        return stored_a + stored_b, failed_a + failed_b

    async def _save(
        self, posts: Sequence[Post], analyses: Sequence[Analysis], stop: asyncio.Event
    ) -> None:
        """One transaction; a store outage is waited out (never acking what was not stored)."""
        backoff = Backoff(0.2, 10.0)
        while True:
            try:
                async with self.session_factory() as session, session.begin():
                    await store.save_batch(session, posts, analyses)
                return
            except Exception as error:  # noqa: BLE001 - down, overloaded or misconfigured: wait
                if _is_row_error(error):
                    raise RowError(_one_line(getattr(error, "orig", None) or error)) from error
                if stop.is_set():
                    raise Stopped from error
                delay = backoff.next_delay()
                log.warning(
                    "store unavailable consumer=%s error=%s retry_in_s=%.2f",
                    self.name,
                    _one_line(error),
                    delay,
                )
                await _sleep(delay, stop)

    async def _until_done(
        self, action: Callable[[], Awaitable[T]], stop: asyncio.Event, what: str
    ) -> T:
        """Retry a bus call through an outage; on shutdown give up (the entries stay pending)."""
        backoff = Backoff()
        while True:
            try:
                return await action()
            except (RedisError, OSError) as error:
                if stop.is_set():
                    raise Stopped from error
                delay = backoff.next_delay()
                log.warning(
                    "bus unavailable consumer=%s action=%s error=%s retry_in_s=%.2f",
                    self.name,
                    what,
                    type(error).__name__,
                    delay,
                )
                await _sleep(delay, stop)

    async def _announce(self, stored: list[tuple[_Item, Analysis]]) -> None:
        """Best effort: the posts are stored whatever happens to their live announcement."""
        if not stored:
            return
        events = [
            Event(POST_ANALYZED, PostView.of(item.post, analysis).model_dump(mode="json"))
            for item, analysis in stored
        ]
        try:
            await self.events.publish_many(events)
        except (RedisError, OSError) as error:
            log.warning(
                "events not published consumer=%s count=%d error=%s",
                self.name,
                len(events),
                type(error).__name__,
            )


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    """Sleep, but wake at once when shutdown is asked for."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _is_row_error(error: Exception) -> bool:
    if isinstance(error, DataError | IntegrityError):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return isinstance(error, DBAPIError) and str(sqlstate)[:2] in ROW_SQLSTATE_CLASSES


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__


def load_analyzer(spec: str | None, settings: Settings) -> Analyzer:
    """`module:attr` names a zero-argument factory (a class will do); None is the real model.

    Blocking (it may load models). Raises RuntimeError when the model cannot load and
    ValueError for a spec that names nothing.
    """
    if spec is None:
        from sentiment_platform.services.sentiment_analyzer import SentimentAnalyzer

        return SentimentAnalyzer.from_settings(settings)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"analyzer must look like 'package.module:Factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"analyzer {spec!r} not found: {error}") from error
    return factory()


async def run_worker(settings: Settings, analyzer: Analyzer, name: str | None) -> None:
    """The `worker` command: one consumer until SIGTERM/SIGINT, which finish the batch first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = create_engine(settings)
    bus = create_bus(settings)
    events = create_events(settings)
    worker = Worker(
        bus,
        events,
        create_session_factory(engine),
        analyzer,
        name,
        WorkerConfig.from_settings(settings),
    )
    try:
        await worker.run(stop)
    finally:
        await events.close()
        await bus.close()
        await engine.dispose()
        close = getattr(analyzer, "close", None)  # the model's threads and clients, if it has any
        if callable(close):
            await asyncio.to_thread(close)
