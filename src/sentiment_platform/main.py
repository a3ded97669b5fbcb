"""The FastAPI app factory and its lifespan: engine, bus and the background parts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sentiment_platform.api import probes, routes, websocket
from sentiment_platform.api.security import (
    KeyRing,
    MemoryCounter,
    RateLimiter,
    RedisCounter,
    rate_limit,
)
from sentiment_platform.bus import create_bus, create_events, redis_client
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.db import create_engine, create_session_factory
from sentiment_platform.pipeline.ingester import feed_demo
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.alerting import AlertMonitor, lease_for
from sentiment_platform.services.sentiment_analyzer import SentimentAnalyzer

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await _start(app, settings, stack)
            yield

    app = FastAPI(
        title="Sentiment platform",
        version="0.1.0",
        summary="Real-time sentiment and emotion analysis of social-media posts.",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    app.include_router(probes.router)
    app.include_router(routes.router, dependencies=[Depends(rate_limit)])
    app.include_router(websocket.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    # Per-app registry: a second app in one process (tests) must not share request counters.
    app.state.http_metrics = CollectorRegistry()
    Instrumentator(
        registry=app.state.http_metrics, excluded_handlers=["/metrics", "/livez", "/readyz"]
    ).instrument(app)
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeoutError, _store_unavailable)
    app.add_exception_handler(OSError, _store_unavailable)
    if (WEB_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
        app.add_api_route(
            "/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False
        )
    return app


async def _start(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Open everything the process needs; `stack` closes it in reverse order on shutdown."""
    engine = create_engine(settings)
    stack.push_async_callback(engine.dispose)
    session_factory = create_session_factory(engine)
    bus = create_bus(settings)
    stack.push_async_callback(bus.close)
    events = create_events(settings)
    stack.push_async_callback(events.close)
    counter: MemoryCounter | RedisCounter = MemoryCounter()
    if settings.uses_redis:
        counter_client = redis_client(settings)
        stack.push_async_callback(counter_client.aclose)
        counter = RedisCounter(counter_client)

    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.bus = bus
    app.state.events = events
    app.state.key_ring = KeyRing(settings.api_keys)
    app.state.rate_limiter = RateLimiter(counter, settings.rate_limit_per_minute)
    app.state.model_status = lambda: "runs in the workers" if settings.uses_redis else "off"
    _warn_if_open(settings)

    hub = websocket.Hub(settings, session_factory, events)
    app.state.hub = hub
    hub.start()
    stack.push_async_callback(hub.stop)
    lease_client = redis_client(settings)  # unused (never connected) in embedded mode
    stack.push_async_callback(lease_client.aclose)
    monitor = AlertMonitor(settings, session_factory, events, lease_for(settings, lease_client))
    monitor.start()
    stack.push_async_callback(monitor.stop)

    if not settings.uses_redis and settings.embedded_worker:
        # The embedded default: the model and one worker live in this process.
        analyzer = await asyncio.to_thread(SentimentAnalyzer.from_settings, settings)
        stack.callback(analyzer.close)
        app.state.model_status = lambda: analyzer.status
        worker = Worker(
            bus, events, session_factory, analyzer, "embedded", WorkerConfig.from_settings(settings)
        )
        _run_in_background(stack, worker.run, "worker")
        if settings.serve_demo:
            _run_in_background(stack, partial(feed_demo, bus), "demo")


def _run_in_background(
    stack: AsyncExitStack, run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str
) -> None:
    """Start `run(stop)` as a task; on shutdown set `stop` and wait for it to finish."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop), name=name)

    async def finish() -> None:
        stop.set()
        await task

    stack.push_async_callback(finish)


def _warn_if_open(settings: Settings) -> None:
    if settings.api_keys:
        log.info("write endpoints require an API key keys=%d", len(settings.api_keys))
    elif settings.api_host in ("127.0.0.1", "localhost", "::1"):
        log.info("no API_KEYS set: write endpoints are open to this machine only")
    else:
        log.warning(
            "no API_KEYS set: write endpoints are open to anyone who reaches %s", settings.api_host
        )


async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each bad field, without echoing the (possibly huge) input back."""
    detail = [{key: e[key] for key in ("loc", "msg", "type")} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


# SQLSTATE classes that mean "the database cannot serve now": connection (08), resources
# (53), operator intervention such as a statement timeout or a shutdown (57).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


async def _database_error(request: Request, error: DBAPIError) -> JSONResponse:
    """Outages and timeouts are 503s; any other database error is a bug and stays a 500."""
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    if isinstance(error, OperationalError | InterfaceError) or sqlstate.startswith(
        UNAVAILABLE_SQLSTATE_CLASSES
    ):
        return await _store_unavailable(request, error)
    raise error


async def _store_unavailable(_request: Request, error: Exception) -> JSONResponse:
    """A database that is down or overloaded is a 503 with a reason, never a traceback."""
    log.warning("store unavailable error=%s", type(error).__name__)
    return JSONResponse(
        status_code=503,
        content={"detail": f"the database is unavailable ({type(error).__name__}); retry shortly"},
        headers={"Retry-After": "5"},
    )
