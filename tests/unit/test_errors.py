"""Each platform error answers exactly as the `HTTPException` it replaced: same status, same
`{"detail": …}` body, same headers; FastAPI's own answers (unknown route, wrong method) are
left as FastAPI gives them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from sentiment_platform.api.errors import install_error_handlers
from sentiment_platform.errors import (
    Conflict,
    NotFound,
    PlatformError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)

pytestmark = pytest.mark.asyncio

CASES: dict[str, tuple[PlatformError, HTTPException]] = {
    "not-found": (NotFound("no alert rule 7"), HTTPException(404, detail="no alert rule 7")),
    "conflict": (Conflict("read-only"), HTTPException(409, detail="read-only")),
    "unauthorized": (
        Unauthorized("a valid X-API-Key header is required for this endpoint"),
        HTTPException(
            401,
            detail="a valid X-API-Key header is required for this endpoint",
            headers={"WWW-Authenticate": "APIKey"},
        ),
    ),
    "unprocessable": (Unprocessable("too many rows"), HTTPException(422, detail="too many rows")),
    "too-many": (
        TooManyRequests("rate limit exceeded", retry_after_s=42),
        HTTPException(429, detail="rate limit exceeded", headers={"Retry-After": "42"}),
    ),
    "unavailable": (
        ServiceUnavailable("Redis is unavailable"),
        HTTPException(503, detail="Redis is unavailable", headers={"Retry-After": "5"}),
    ),
}


def _app(raising: int) -> FastAPI:
    """An app whose routes raise the platform error (0) or the `HTTPException` (1) of a case."""
    app = FastAPI()
    install_error_handlers(app)
    for name, errors in CASES.items():
        app.add_api_route(f"/{name}", _raises(errors[raising]), methods=["GET"])
    return app


def _raises(error: Exception) -> Callable[[], Awaitable[None]]:
    async def endpoint() -> None:
        raise error

    return endpoint


def _answer(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {key: value for key, value in response.headers.items() if key != "content-length"}
    return response.status_code, response.content, headers


async def test_each_platform_error_answers_as_its_http_exception_did() -> None:
    platform, fastapi = (httpx.ASGITransport(app=_app(raising)) for raising in (0, 1))
    async with (
        httpx.AsyncClient(transport=platform, base_url="http://localhost") as ours,
        httpx.AsyncClient(transport=fastapi, base_url="http://localhost") as theirs,
    ):
        for name in CASES:
            answer = await ours.get(f"/{name}")
            assert _answer(answer) == _answer(await theirs.get(f"/{name}")), name
            assert answer.status_code == CASES[name][0].status_code


async def test_fastapi_keeps_its_own_answers() -> None:
    transport = httpx.ASGITransport(app=_app(0))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        unknown = await client.get("/nowhere")
        assert (unknown.status_code, unknown.json()) == (404, {"detail": "Not Found"})
        wrong = await client.delete("/conflict")
        assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})
        assert wrong.headers["allow"] == "GET"
