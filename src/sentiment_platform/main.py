"""The FastAPI app factory and its lifespan: the runtime, and the parts only the API runs."""

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
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sentiment_platform.api import probes, routes, websocket
from sentiment_platform.api.deps import ApiParts, rate_limit
from sentiment_platform.api.hub import Hub
from sentiment_platform.api.security import KeyRing, MemoryCounter, RateLimiter, RedisCounter
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.errors import PlatformError, ServiceUnavailable
from sentiment_platform.pipeline.demo import feed_demo
from sentiment_platform.pipeline.worker import Worker
from sentiment_platform.runtime import load_analyzer, open_runtime
from sentiment_platform.services.alerting import AlertMonitor, lease_for
from sentiment_platform.services.retention import run_retention

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
    app.add_exception_handler(PlatformError, _platform_error)  # type: ignore[arg-type]
    for outage in (DBAPIError, PoolTimeoutError, OSError, RedisError):
        app.add_exception_handler(outage, _outage)
    if (WEB_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
        app.add_api_route(
            "/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False
        )
    return app


async def _start(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Open everything the process needs; `stack` closes it in reverse order on shutdown."""
    embedded_worker = not settings.uses_redis and settings.embedded_worker
    # The embedded default: the model and one worker live in this process.
    analyzer = await load_analyzer(None, settings) if embedded_worker else None
    runtime = await stack.enter_async_context(open_runtime(settings, analyzer))
    counter = RedisCounter(runtime.redis) if runtime.redis is not None else MemoryCounter()
    hub = Hub(settings, runtime.session_factory, runtime.events)
    app.state.api = ApiParts(
        runtime=runtime,
        hub=hub,
        key_ring=KeyRing(settings.api_keys),
        rate_limiter=RateLimiter(counter, settings.rate_limit_per_minute),
        http_metrics=app.state.http_metrics,
    )
    _warn_if_open(settings)
    hub.start()
    stack.push_async_callback(hub.stop)
    lease = lease_for(settings, runtime.redis) if runtime.redis is not None else None
    monitor = AlertMonitor(settings, runtime.session_factory, runtime.events, lease)
    monitor.start()
    stack.push_async_callback(monitor.stop)

    _run_in_background(
        stack, partial(run_retention, runtime.session_factory, settings), "retention"
    )
    if embedded_worker:
        _run_in_background(stack, Worker.from_runtime(runtime, "embedded").run, "worker")
        if settings.serve_demo:
            _run_in_background(stack, partial(feed_demo, runtime.bus), "demo")


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
    log.warning(
        "service unavailable",
        extra={"event": "api.unavailable", "service": service, "error": type(error).__name__},
    )
    detail = f"{service} is unavailable ({type(error).__name__}); retry shortly"
    return await _platform_error(request, ServiceUnavailable(detail))


def parts_of(app: FastAPI) -> ApiParts:
    """The app's runtime and API parts, once its lifespan has started (tests reach in)."""
    parts: ApiParts = app.state.api
    return parts
