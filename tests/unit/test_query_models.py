"""`from_query` reads a query model as FastAPI's own `Query()` does: the same values, the
same 422s, the same OpenAPI parameters; it only skips FastAPI's field-by-field walk.

Each model is mounted twice on a throwaway app, once each way, and every query below is
asked of both."""

import asyncio
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Query
from fastapi.routing import APIRoute
from pydantic import BaseModel

from sentiment_platform.api.query import from_query, parameters
from sentiment_platform.api.routes import router
from sentiment_platform.api.schemas import AlertsQuery, ExportQuery, MetricsQuery, PostsQuery

MODELS: list[type[BaseModel]] = [PostsQuery, ExportQuery, MetricsQuery, AlertsQuery]
QUERIES = [
    "",
    "limit=10&offset=20",
    "limit=10&limit=20",  # repeated: the last one counts, both ways
    "limit=0",
    "limit=abc&offset=-1",
    "sentiment_filter=negative&emotion=anger&source=twitter",
    "sentiment_filter=bad",
    "source=",
    "q=ab",
    "q=delay&since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
    "since=yesterday",
    "cursor=%21%21",
    "unknown=1",
    "format=xml",
    "format=jsonl",
    "window_minutes=5",
    "window_minutes=0",
    "start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z&bucket=hour",
    "start=2026-01-01T00:00:00Z&window_minutes=5",
    "bucket=fortnight",
    "rule=-1",
    "rule=3&since=2026-01-01T00:00:00Z",
]


def _app() -> FastAPI:
    app = FastAPI()
    for model in MODELS:

        async def by_fastapi(query: Annotated[model, Query()]) -> Any:  # type: ignore[valid-type]
            return _seen(query)

        async def by_us(query: Annotated[model, from_query(model)]) -> Any:  # type: ignore[valid-type]
            return _seen(query)

        app.get(f"/fastapi/{model.__name__}")(by_fastapi)
        app.get(f"/ours/{model.__name__}")(by_us)
    return app


def _seen(query: BaseModel) -> dict[str, Any]:
    """The parsed values, minus the clock: a relative range is resolved against now."""
    seen = query.model_dump(mode="json")
    if isinstance(query, MetricsQuery) and query.relative_to_now:
        seen["end"] = seen["start"] = "now"
    return seen


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_same_answers_and_the_same_errors(model: type[BaseModel]) -> None:
    async def ask_both() -> None:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for query in QUERIES:
                theirs = await client.get(f"/fastapi/{model.__name__}?{query}")
                ours = await client.get(f"/ours/{model.__name__}?{query}")
                assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()), query

    asyncio.run(ask_both())


def test_the_same_openapi_parameters() -> None:
    app = _app()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path.startswith("/ours/"):
            model = route.dependant.dependencies[0].call.query_model  # type: ignore[attr-defined]
            route.openapi_extra = {"parameters": parameters(model)}  # what document() adds
    paths = app.openapi()["paths"]
    for model in MODELS:
        theirs = paths[f"/fastapi/{model.__name__}"]["get"]["parameters"]
        assert paths[f"/ours/{model.__name__}"]["get"]["parameters"] == theirs


def test_the_platform_routes_document_their_query_models() -> None:
    documented = {
        route.path: [p["name"] for p in (route.openapi_extra or {}).get("parameters", [])]
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods
    }
    assert documented["/api/posts"] == list(PostsQuery.model_fields)
    assert documented["/api/posts/export"] == list(ExportQuery.model_fields)
    assert documented["/api/metrics"] == list(MetricsQuery.model_fields)
    assert documented["/api/alerts"] == list(AlertsQuery.model_fields)
