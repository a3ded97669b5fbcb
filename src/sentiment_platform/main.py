"""The FastAPI app factory and its lifespan: the runtime, and the parts only the API runs."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.api import probes, routes, rule_routes, websocket
from sentiment_platform.api.answer_cache import SingleFlightCache
from sentiment_platform.api.background import Background
from sentiment_platform.api.deps import ApiParts, rate_limit
from sentiment_platform.api.fresh_answers import FreshAnswers, FreshAnswersMiddleware
from sentiment_platform.api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from sentiment_platform.api.hub import Hub
from sentiment_platform.api.security import KeyRing, MemoryCounter, RateLimiter, RedisCounter
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.errors import PlatformError, ServiceUnavailable
from sentiment_platform.pipeline.demo import feed_demo
from sentiment_platform.pipeline.ingester import PatientPublisher
from sentiment_platform.pipeline.worker import Worker
from sentiment_platform.runtime import embedded_queue_path, load_analyzer, open_runtime
from sentiment_platform.services.alerting.leadership import lease_for
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.retention import run_retention

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"


def create_app(
    settings: Settings | None = None, sessions: async_sessionmaker[AsyncSession] | None = None
) -> FastAPI:
    """The app; requests open their sessions from `sessions` (default: the runtime's; the
    tests pass one inside a rolled-back transaction). Handed over here, not overridden as a
    dependency: each dependency FastAPI solves cost a cached metrics answer ~5 % of its CPU."""
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
    # solves costs a cached metrics answer ~5 % of its CPU).
    limited = [Depends(rate_limit)] if settings.rate_limit_per_minute > 0 else []
    app.include_router(routes.router, dependencies=limited)
    app.include_router(rule_routes.router, dependencies=limited)
    app.include_router(websocket.router)
    if not limited:  # innermost: the host check, CORS and the request metrics see every answer
        app.add_middleware(FreshAnswersMiddleware, answers=fresh_answers)
    # A DNS-rebinding page reaches us under its own host name: refused (400) before routing,
    # so it can neither post nor open /ws.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings))
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
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(PlatformError, _platform_error)  # type: ignore[arg-type]
    for outage in (DBAPIError, PoolTimeoutError, OSError, RedisError):
        app.add_exception_handler(outage, _outage)
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
    )
    _warn_if_open(settings)
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


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "[::]")


def allowed_hosts(settings: Settings) -> list[str]:
    """ALLOWED_HOSTS, else the loopback names and API_HOST. Bound to a wildcard address
    without ALLOWED_HOSTS, any Host is served (and `serve` says so at start)."""
    if settings.allowed_hosts:
        return settings.allowed_hosts
    if settings.api_host in WILDCARD_ADDRESSES:
        return ["*"]
    host = settings.api_host
    extra = [host, f"[{host}]"] if ":" in host and not host.startswith("[") else [host]
    return list(dict.fromkeys([*LOOPBACK_HOSTS, *extra]))


def _warn_if_open(settings: Settings) -> None:
    if allowed_hosts(settings) == ["*"]:
        log.warning(
            "no ALLOWED_HOSTS set while listening on every address: any Host header is served",
            extra={"event": "security.any_host", "host": settings.api_host},
        )
    if settings.api_keys:
        log.info(
            "write endpoints require an API key",
            extra={"event": "security.keys", "keys": len(settings.api_keys)},
        )
    elif settings.api_host in ("127.0.0.1", "localhost", "::1"):
        log.info(
            "no API_KEYS set: write endpoints are open to this machine only",
            extra={"event": "security.open_locally"},
        )
    else:
        log.warning(
            "no API_KEYS set: write endpoints are open to anyone who reaches the host",
            extra={"event": "security.open", "host": settings.api_host},
        )


async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each bad field, without echoing the (possibly huge) input back."""
    detail = [{key: e[key] for key in ("loc", "msg", "type")} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _platform_error(_request: Request, error: PlatformError) -> JSONResponse:
    """The one place a platform error becomes an answer."""
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )


# SQLSTATE classes that mean "the database cannot serve now": connection (08), resources
# (53), operator intervention such as a statement timeout or a shutdown (57).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


class _EveryFewSeconds:
    """One log line per service per OUTAGE_LOG_EVERY_S during an outage, not one per request;
    each line says how many answers were refused since the previous one."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._count: dict[str, int] = {}

    def due(self, service: str) -> int | None:
        now = time.monotonic()
        self._count[service] = self._count.get(service, 0) + 1
        if now - self._last.get(service, -math.inf) < OUTAGE_LOG_EVERY_S:
            return None
        self._last[service] = now
        return self._count.pop(service)


OUTAGE_LOG_EVERY_S = 10.0
_OUTAGE_LOG = _EveryFewSeconds()


async def _outage(request: Request, error: Exception) -> JSONResponse:
    """A database or Redis that is down or overloaded is a 503 with a reason; any other
    database error is a bug and stays a 500."""
    if isinstance(error, DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
        if not isinstance(error, OperationalError | InterfaceError) and not sqlstate.startswith(
            UNAVAILABLE_SQLSTATE_CLASSES
        ):
            raise error
    service = "Redis" if isinstance(error, RedisError) else "the database"
    parts: ApiParts | None = getattr(request.app.state, "api", None)
    if parts is not None:
        parts.health_cache.drop()  # /api/health must not vouch for what just failed
    suppressed = _OUTAGE_LOG.due(service)
    if suppressed is not None:
        log.warning(
            "service unavailable",
            extra={
                "event": "api.unavailable",
                "service": service,
                "error": type(error).__name__,
                "since_last_line": suppressed,
            },
        )
    detail = f"{service} is unavailable ({type(error).__name__}); retry shortly"
    return await _platform_error(request, ServiceUnavailable(detail))


def parts_of(app: FastAPI) -> ApiParts:
    """The app's runtime and API parts, once its lifespan has started (tests reach in)."""
    parts: ApiParts = app.state.api
    return parts
