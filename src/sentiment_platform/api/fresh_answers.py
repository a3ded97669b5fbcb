"""Shared answers that are still fresh, sent before routing.

A cached `/api/metrics` answer is bytes already encoded, yet routing it still costs most of
the request: FastAPI matching the route and solving its dependencies, for an answer that is
already known. So a route that answers from a `SingleFlightCache` of encoded bodies notes
here which entry answers its raw query string (`note`); while that entry is fresh,
`FreshAnswersMiddleware` sends it without routing. An entry that has expired or was dropped
sends nothing here: the request is routed as before, and the route recomputes (one caller)
or serves the previous answer while it does. Only a query string the route has validated is
ever noted, so a bad one is always routed to its 422.

The middleware sits inside the host check, CORS and the request metrics, which see these
requests as they see any other. It is left out while the rate limit is on: each limited
request is counted on the routed path.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from sentiment_platform.api.answer_cache import SingleFlightCache

MAX_NOTED = 1_024  # distinct query strings remembered; past it the notes start over
JSON_CONTENT = (b"content-type", b"application/json")


class FreshAnswers:
    """Which cache entry answers which GET path and raw query string, and through which
    route (the request metrics name a handler by the route the router matched)."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, bytes], tuple[SingleFlightCache[Any], Hashable, Any]] = {}

    def note(self, request: Request, cache: SingleFlightCache[Any], key: Hashable) -> None:
        """`cache[key]` (an encoded JSON body) answers this request's path and query string."""
        if len(self._notes) >= MAX_NOTED:
            self._notes.clear()
        scope = request.scope
        self._notes[scope["path"], scope["query_string"]] = (cache, key, scope["route"])

    def answer(self, scope: Scope) -> bytes | None:
        """The fresh body for this request, marking it as routed; None: route it."""
        noted = self._notes.get((scope["path"], scope["query_string"]))
        if noted is None:
            return None
        cache, key, route = noted
        body = cache.fresh(key)
        if not isinstance(body, bytes):
            return None
        scope["route"] = route
        return body


class FreshAnswersMiddleware:
    def __init__(self, app: ASGIApp, answers: FreshAnswers) -> None:
        self.app = app
        self.answers = answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = None
        if scope["type"] == "http" and scope["method"] == "GET":
            body = self.answers.answer(scope)
        if body is None:
            await self.app(scope, receive, send)
            return
        headers = [(b"content-length", str(len(body)).encode()), JSON_CONTENT]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
