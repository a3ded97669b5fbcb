"""The FastAPI app factory and its lifespan: the runtime, and the parts only the API runs.

The Host check lives in `api/hosts.py`, the exception handlers in `api/errors.py`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.api import (
    label_routes,
    model_routes,
    probes,
    routes,
    rule_routes,
    websocket,
)
from sentiment_platform.api.answer_cache import SingleFlightCache
from sentiment_platform.api.background import Background
from sentiment_platform.api.deps import ApiParts, rate_limit
from sentiment_platform.api.errors import install_error_handlers
from sentiment_platform.api.fresh_answers import FreshAnswers, FreshAnswersMiddleware
from sentiment_platform.api.hosts import install_host_check, warn_if_open
from sentiment_platform.api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from sentiment_platform.api.hub import Hub
from sentiment_platform.api.security import KeyRing, MemoryCounter, RateLimiter, RedisCounter
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.db import create_engine
from sentiment_platform.pipeline.demo import feed_demo
from sentiment_platform.pipeline.ingester import PatientPublisher
from sentiment_platform.pipeline.worker import Worker
from sentiment_platform.runtime import embedded_queue_path, load_analyzer, open_runtime
from sentiment_platform.services.alerting.leadership import lease_for
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.analysis.model_switch import ModelCheck
from sentiment_platform.services.analysis.registry import ensure_embedded
from sentiment_platform.services.retention import run_retention

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"


def create_app(
    settings: Settings | None = None, sessions: async_sessionmaker[AsyncSession] | None = None
) -> FastAPI:
    """The app; requests open their sessions from `sessions` (default: the runtime's; the
    tests pass one inside a rolled-back transaction). Handed over here, not overridden as a
    dependency: FastAPI solves every dependency on every request, a cost the hot reads feel."""
    settings = settings or get_settings()
    fresh_answers = FreshAnswers()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await _start(app, settings, stack, sessions, fresh_answers)
            yield

    app = FastAPI(
        title="Sentiment platform",
        version="0.1.0",
        summary="Real-time sentiment and emotion analysis of social-media posts.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        # No OpenTelemetry here (Prometheus `/metrics` instead): switched off, FastAPI stops
        # asking the three global providers whether they are configured on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.include_router(probes.router)
    # RATE_LIMIT_PER_MINUTE=0 turns the limit off: no dependency at all then (each one FastAPI
    # solves is paid on every request).
    limited = [Depends(rate_limit)] if settings.rate_limit_per_minute > 0 else []
    app.include_router(routes.router, dependencies=limited)
    app.include_router(rule_routes.router, dependencies=limited)
    app.include_router(model_routes.router, dependencies=limited)
    app.include_router(label_routes.router, dependencies=limited)
    app.include_router(websocket.router)
    if not limited:  # innermost: the host check, CORS and the request metrics see every answer
        app.add_middleware(FreshAnswersMiddleware, answers=fresh_answers)
    install_host_check(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    # Per-app registry: a second app in one process (tests) must not share request counters.
    app.state.http_metrics = CollectorRegistry()
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(app.state.http_metrics))
    install_error_handlers(app)
    if (WEB_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
        app.add_api_route(
            "/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False
        )
    return app


async def _start(
    app: FastAPI,
    settings: Settings,
    stack: AsyncExitStack,
    sessions: async_sessionmaker[AsyncSession] | None,
    fresh_answers: FreshAnswers,
) -> None:
    """Open everything the process needs; `stack` closes it in reverse order on shutdown."""
    embedded_worker = not settings.uses_redis and settings.embedded_worker
    # The embedded default: the model and one worker live in this process.
    analyzer = await load_analyzer(None, settings) if embedded_worker else None
    runtime = await stack.enter_async_context(open_runtime(settings, analyzer))
    counter = RedisCounter(runtime.redis) if runtime.redis is not None else MemoryCounter()
    alerts_cache: SingleFlightCache[bytes] = SingleFlightCache(settings.metrics_cache_s)
    hub = Hub(settings, runtime.session_factory, runtime.events, on_alert=alerts_cache.drop)
    background = Background()
    generic_reads = None
    if not settings.is_sqlite:  # the metrics reads' pool: as many again at most, when busy
        generic_reads = create_engine(settings, generic_plans=True)
        stack.push_async_callback(generic_reads.dispose)
    app.state.api = ApiParts(
        runtime=runtime,
        sessions=sessions or runtime.session_factory,
        hub=hub,
        key_ring=KeyRing(settings.api_keys),
        rate_limiter=RateLimiter(counter, settings.rate_limit_per_minute),
        http_metrics=app.state.http_metrics,
        background=background,
        alerts_cache=alerts_cache,
        counts_cache=SingleFlightCache(settings.metrics_cache_s, serve_stale=True),
        session_gate=asyncio.Semaphore(settings.db_pool_size),
        fresh_answers=fresh_answers,
        model_check=ModelCheck(settings) if settings.uses_redis else None,
        generic_reads=generic_reads,
    )
    warn_if_open(settings)
    await _register_embedded_model(app.state.api.sessions)
    if not settings.uses_redis and embedded_queue_path(settings) is None:
        log.warning(
            "the in-process queue is not journaled: a crash loses posts not yet analysed; "
            "set EMBEDDED_QUEUE_PATH (or REDIS_HOST)",
            extra={"event": "bus.not_durable"},
        )
    background.expect(*hub.start())
    stack.push_async_callback(hub.stop)
    lease = lease_for(settings, runtime.redis) if runtime.redis is not None else None
    monitor = AlertMonitor(settings, runtime.session_factory, runtime.events, lease)
    background.expect(*monitor.start())
    stack.push_async_callback(monitor.stop)

    if settings.retention_days is not None or settings.rollup_retention_days is not None:
        retention = partial(run_retention, runtime.session_factory, settings)
        background.supervise(stack, retention, "retention")
    if embedded_worker:
        # Restarted if it dies: posts the bus holds are never left behind a dead task.
        worker = Worker.from_runtime(runtime, "embedded")
        background.supervise(stack, worker.run, "worker")
        if settings.serve_demo:
            publisher = PatientPublisher(runtime.bus)
            background.supervise(stack, partial(feed_demo, publisher), "demo")


async def _register_embedded_model(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The embedded model's rows in the registry (the workers write them too); a store that
    cannot answer now does not keep the API from starting: `/api/models` lists the embedded
    model anyway, and the first command or worker writes its rows."""
    try:
        async with sessions() as session, session.begin():
            await ensure_embedded(session)
    except Exception as error:  # noqa: BLE001 - best effort, see above
        log.warning(
            "the embedded model's registry rows were not written",
            extra={"event": "registry.embedded_unwritten", "error": type(error).__name__},
        )
