"""Every exception handler of the app, registered by `install_error_handlers`.

A `PlatformError` (`errors.py`) becomes `{"detail": …}` with its class's status and
headers. A database or Redis that is down or overloaded is a 503 with a reason, not a 500,
so a client knows to retry; any other database error is a bug and stays a 500. A request
that fails validation is a 422 naming each bad field, without the input echoed back.
FastAPI's own `HTTPException` (an unknown route, a wrong method) keeps FastAPI's handler.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sentiment_platform.api.deps import ApiParts
from sentiment_platform.errors import PlatformError, ServiceUnavailable

log = logging.getLogger(__name__)

# SQLSTATE classes that mean "the database cannot serve now": connection (08), resources
# (53), operator intervention such as a statement timeout or a shutdown (57).
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
OUTAGE_LOG_EVERY_S = 10.0


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(PlatformError, _platform_error)  # type: ignore[arg-type]
    for outage in (DBAPIError, PoolTimeoutError, OSError, RedisError):
        app.add_exception_handler(outage, _outage)


async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each bad field, without echoing the (possibly huge) input back."""
    detail = [{key: e[key] for key in ("loc", "msg", "type")} for e in error.errors()]
    return JSONResponse(status_code=422, content={"detail": detail})


async def _platform_error(_request: Request, error: PlatformError) -> JSONResponse:
    """The one place a platform error becomes an answer."""
    return JSONResponse(
        status_code=error.status_code, content={"detail": error.detail}, headers=error.headers
    )


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
