"""Request metrics for `/metrics`: a raw ASGI middleware counting into prometheus_client.

It replaces prometheus-fastapi-instrumentator, which per request built a `Request`, matched
the path against every route a second time to name the handler, built a `Response` and an
`Info` and gathered its async instrumentations, all on every request. Here the handler is
the route the router already matched (`scope["route"]`, read after the call), and a request
costs two label lookups and two increments. The series keep the instrumentator's names and
labels: `http_requests_total{handler,method,status}` (status grouped as `2xx`, `4xx`, …) and
`http_request_duration_seconds{handler,method}`; a path no route matches counts as `none`.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXCLUDED = frozenset({"/metrics", "/livez", "/readyz"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    """The series, in one app's registry (a second app in one process must not share them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["method", "status", "handler"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Latency with only few buckets by handler and method.",
            ["handler", "method"],
            buckets=BUCKETS,
            registry=registry,
        )
        # Each label set's two children, looked up once (`labels()` checks and locks each time)
        self._children: dict[tuple[str, int, str], tuple[Any, Any]] = {}

    def observe(self, method: str, status: int, handler: str, seconds: float) -> None:
        key = (method, status // 100, handler)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, f"{status // 100}xx", handler),
                self.duration.labels(handler, method),
            )
        children[0].inc()
        children[1].observe(seconds)


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500  # what an exception that escapes the app becomes

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            handler = _handler(scope)
            if handler not in EXCLUDED:
                self.metrics.observe(scope["method"], status, handler, perf_counter() - started)


def _handler(scope: Scope) -> str:
    """The matched route's template (`/api/rules/{rule_id}`), else `none`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "none"
