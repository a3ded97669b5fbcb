"""The FastAPI app factory and its lifespan: engine, bus and the background parts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sentiment_platform.api.routes import router
from sentiment_platform.bus import create_bus
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.db import create_engine, create_session_factory

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
        try:
            yield
        finally:
            await bus.close()
            await engine.dispose()

    app = FastAPI(
        title="Sentiment platform",
        version="0.1.0",
        summary="Real-time sentiment and emotion analysis of social-media posts.",
        lifespan=lifespan,
    )
    app.include_router(router)
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
