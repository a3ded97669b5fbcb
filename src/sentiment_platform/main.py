"""The FastAPI app factory and its lifespan: engine, bus and the background parts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import InterfaceError, OperationalError
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
from sentiment_platform.services.alerting import AlertMonitor

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        bus = create_bus(settings)
        app.state.settings = settings
        app.state.session_factory = create_session_factory(engine)
        app.state.bus = bus
        app.state.model_status = lambda: "not loaded in this process"
        app.state.key_ring = KeyRing(settings.api_keys)
        counter_client = redis_client(settings) if settings.uses_redis else None
        app.state.rate_limiter = RateLimiter(
            RedisCounter(counter_client) if counter_client else MemoryCounter(),
            settings.rate_limit_per_minute,
        )
        _warn_if_open(settings)
        events = create_events(settings)
        app.state.events = events
        app.state.hub = websocket.Hub(settings, app.state.session_factory, events)
        monitor = AlertMonitor(settings, app.state.session_factory, events)
        app.state.hub.start()
        monitor.start()
        try:
            yield
        finally:
            await monitor.stop()
            await app.state.hub.stop()
            await events.close()
            if counter_client is not None:
                await counter_client.aclose()
            await bus.close()
            await engine.dispose()

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
    Instrumentator(excluded_handlers=["/metrics", "/livez", "/readyz"]).instrument(app).expose(
        app, include_in_schema=False
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(InterfaceError, _store_unavailable)
    app.add_exception_handler(PoolTimeoutError, _store_unavailable)
    app.add_exception_handler(OSError, _store_unavailable)
    if (WEB_DIR / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
        app.add_api_route(
            "/", lambda: FileResponse(WEB_DIR / "index.html"), include_in_schema=False
        )
    return app


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


async def _store_unavailable(_request: Request, error: Exception) -> JSONResponse:
    """A database that is down or overloaded is a 503 with a reason, never a traceback."""
    log.warning("store unavailable error=%s", type(error).__name__)
    return JSONResponse(
        status_code=503,
        content={"detail": f"the database is unavailable ({type(error).__name__}); retry shortly"},
        headers={"Retry-After": "5"},
    )
