"""Bad input is a 422 naming the field; a dead database is a 503 with a reason."""

from __future__ import annotations

import httpx
import pytest

from sentiment_platform.config import Settings
from sentiment_platform.main import create_app

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/posts", {"sentiment_filter": "angry"}, "sentiment_filter"),
        ("/api/posts", {"limit": 0}, "limit"),
        ("/api/posts", {"limit": 1000}, "limit"),
        ("/api/posts", {"offset": -1}, "offset"),
        ("/api/posts", {"emotion": "disgust"}, "emotion"),
        ("/api/posts", {"since": "yesterday"}, "since"),
        ("/api/posts", {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ("/api/metrics", {"start": "2026-13-01"}, "start"),
        ("/api/metrics", {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        ("/api/metrics", {"bucket": "week"}, "bucket"),
        ("/api/metrics", {"window_minutes": 0}, "window_minutes"),
        ("/api/metrics", {"start": "2025-01-01T00:00:00Z", "bucket": "minute"}, "bucket"),
        ("/api/alerts", {"limit": 101}, "limit"),
        ("/api/alerts", {"since": "not-a-date"}, "since"),
    ],
)
async def test_bad_query_is_422_naming_the_field(
    api: httpx.AsyncClient, path: str, params: dict, field: str
) -> None:
    response = await api.get(path, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    named = [str(part) for error in detail for part in error["loc"]] + [
        error["msg"] for error in detail
    ]
    assert any(field in text for text in named), detail


async def test_health_ok_on_a_live_database(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["status"] in ("ok", "degraded")
    assert body["redis"] == "in-process"


async def test_database_down_is_503_everywhere() -> None:
    app = create_app(
        Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere", embedded_worker=False)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            health = await client.get("/api/health")
            assert health.status_code == 503
            assert health.json()["status"] == "down"
            assert health.json()["database"].startswith("down")
            for path in ("/api/posts", "/api/metrics", "/api/alerts"):
                response = await client.get(path)
                assert response.status_code == 503, (path, response.text)
                assert "database is unavailable" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"source": "x", "content": "   "}, ["body", "post", "content"]),
        ({"source": "x", "content": "a" * 10_001}, ["body", "post", "content"]),
        ({"content": "no source"}, ["body", "post", "source"]),
        ({"source": "x", "content": "nul \x00 byte"}, ["body", "post", "content"]),
        ([], ["body", "batch"]),
        ([{"source": "x", "content": "ok"}] * 1_001, ["body", "batch"]),
        ([{"source": "x", "content": "ok"}, {"source": "x"}], ["body", "batch", 1, "content"]),
        (
            {"source": "x", "content": "ok", "created_at": "last week"},
            ["body", "post", "created_at"],
        ),
    ],
)
async def test_bad_posts_are_422_naming_the_field(
    api: httpx.AsyncClient, body: object, where: list
) -> None:
    response = await api.post("/api/posts", json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail] == [where]
    assert "input" not in detail[0]  # a rejected post is not echoed back


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/posts", content=b'{"source": "x",', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
