"""The process's wiring, built in one place and handed down.

`open_runtime(settings)` opens what every entry point needs — the engine and its session
factory, the bus and the events channel (over one shared Redis connection pool in Redis
mode), the duplicate index, and the analyzer when the process runs one — and closes it all
in reverse order.
The API lifespan, the `worker` and `ingest` commands, the benchmarks and the tests all
start from it, so there is one way to wire the platform.

It sits below both front doors (`api`, `pipeline`): what only the API needs on top (the
WebSocket hub, the rate limiter, the alert monitor) the API lifespan builds from it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import redis.asyncio as redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sentiment_platform.bus import Bus, Events
from sentiment_platform.bus.journal import Journal
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.bus.redis_events import RedisEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory
from sentiment_platform.services.analysis.backends import Analyzer
from sentiment_platform.services.analysis.duplicates import DuplicateIndex, LocalDuplicateIndex
from sentiment_platform.services.analysis.duplicates_redis import RedisDuplicateIndex
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    bus: Bus
    events: Events
    redis: redis.Redis | None  # the one pool every Redis user shares; None when embedded
    analyzer: Analyzer | None  # set where this process labels posts
    # Which posts are copies: shared by every worker in Redis mode, this process's otherwise.
    duplicates: DuplicateIndex

    @property
    def model_status(self) -> str:
        """What `/api/health` says of the model in this process."""
        if isinstance(self.analyzer, SentimentAnalyzer):
            return self.analyzer.status
        return self.model_answering

    @property
    def model_answering(self) -> str:
        """What `/readyz` asks of the model here: that posts get labels. An activated model
        that failed to load is not a reason to take the process out of service: the previous
        one answers."""
        if isinstance(self.analyzer, SentimentAnalyzer):
            return self.analyzer.answering
        if self.analyzer is not None:
            return "ok"
        return "runs in the workers" if self.settings.uses_redis else "off"


@asynccontextmanager
async def open_runtime(
    settings: Settings, analyzer: Analyzer | None = None
) -> AsyncIterator[Runtime]:
    """Open the wiring; the analyzer, if given, is owned (and closed) by the runtime."""
    async with AsyncExitStack() as stack:
        if analyzer is not None:
            # Off the loop: the model's close waits for the batch in flight.
            stack.push_async_callback(asyncio.to_thread, _close, analyzer)
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        client: redis.Redis | None = None
        bus: Bus
        events: Events
        window = timedelta(hours=settings.dedup_window_hours)
        duplicates: DuplicateIndex = LocalDuplicateIndex(window)
        if settings.uses_redis:
            client = redis_client(settings)
            stack.push_async_callback(client.aclose)
            bus = RedisStreamBus.from_settings(settings, client)
            events = RedisEvents(client, settings.events_channel)
            # Beside the stream it dedups: the workers of one stream share one index.
            prefix = f"{settings.redis_stream_name}:dedup:"
            duplicates = RedisDuplicateIndex(client, window, prefix)
        else:
            path = embedded_queue_path(settings)
            memory_bus = MemoryBus(
                stream=settings.redis_stream_name,
                maxlen=settings.redis_stream_maxlen,
                max_backlog=settings.stream_max_backlog,
                max_bytes=settings.embedded_queue_bytes,
                journal=Journal(path) if path is not None else None,
            )
            stack.callback(memory_bus.close)
            bus, events = memory_bus, MemoryEvents()
        yield Runtime(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            bus=bus,
            events=events,
            redis=client,
            analyzer=analyzer,
            duplicates=duplicates,
        )


def embedded_queue_path(settings: Settings) -> Path | None:
    """Where the in-process bus journals what it accepted: EMBEDDED_QUEUE_PATH, else beside
    the SQLite store (`sentiment.db` -> `sentiment.queue.db`); None (memory only, not
    durable) for an in-memory SQLite store or PostgreSQL without EMBEDDED_QUEUE_PATH."""
    if settings.embedded_queue_path:
        return Path(settings.embedded_queue_path)
    if not settings.is_sqlite:
        return None
    database = make_url(settings.async_database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    store = Path(database)
    return store.with_name(store.stem + ".queue.db")


async def load_analyzer(spec: str | None, settings: Settings) -> Analyzer:
    """`module:attr` names a zero-argument factory (a class will do); None is the real model,
    loaded off the event loop.

    Raises AnalyzerUnavailable (a RuntimeError) when the model cannot load and ValueError for
    a spec that names nothing.
    """
    if spec is None:
        return await asyncio.to_thread(SentimentAnalyzer.from_settings, settings)
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"analyzer must look like 'package.module:Factory', got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"analyzer {spec!r} not found: {error}") from error
    analyzer: Analyzer = factory()
    return analyzer


def _close(analyzer: Analyzer) -> None:
    """The model's threads and clients, for analyzers that hold any."""
    close = getattr(analyzer, "close", None)
    if callable(close):
        close()
