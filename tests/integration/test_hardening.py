"""Keys, body caps, rate limits, CORS, probes and Prometheus metrics, through the real app."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.main import create_app

pytestmark = pytest.mark.asyncio

POST = {"source": "test", "content": "hello"}


@asynccontextmanager
async def client_for(
    settings: Settings, caller: str = "203.0.113.7"
) -> AsyncIterator[httpx.AsyncClient]:
    if settings.is_sqlite:
        engine = create_engine(settings)
        await upgrade_schema(engine)
        await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(caller, 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


def away_from_a_window_edge() -> None:
    """Rate windows are calendar minutes: don't let one roll over in the middle of a test."""
    into_minute = time.time() % 60
    if into_minute > 57:
        time.sleep(60.5 - into_minute)


def sqlite(tmp_path: Path, **overrides) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", embedded_worker=False, **overrides
    )


async def test_writes_need_a_valid_key_when_keys_are_set(tmp_path: Path) -> None:
    settings = sqlite(tmp_path, api_keys="first-key-0123456789,second-key-0123456789")
    async with client_for(settings) as client:
        missing = await client.post("/api/posts", json=POST)
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        wrong = await client.post("/api/posts", json=POST, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 401
        for key in ("first-key-0123456789", "second-key-0123456789"):
            ok = await client.post("/api/posts", json=POST, headers={"X-API-Key": key})
            assert ok.status_code == 202, ok.text
        assert (await client.get("/api/posts")).status_code == 200  # reads stay open


async def test_writes_are_open_without_keys(tmp_path: Path) -> None:
    async with client_for(sqlite(tmp_path)) as client:
        assert (await client.post("/api/posts", json=POST)).status_code == 202


async def test_an_oversized_body_is_413(tmp_path: Path) -> None:
    async with client_for(sqlite(tmp_path, max_body_bytes=4_096)) as client:
        big = [{"source": "test", "content": "x" * 1_000}] * 5
        response = await client.post("/api/posts", json=big)
        assert response.status_code == 413
        assert (await client.post("/api/posts", json=big[:2])).status_code == 202


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    away_from_a_window_edge()
    async with client_for(sqlite(tmp_path, rate_limit_per_minute=5)) as client:
        codes = [(await client.get("/api/alerts")).status_code for _ in range(5)]
        assert codes == [200] * 5
        limited = await client.get("/api/posts")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 61
        assert "5 requests a minute" in limited.json()["detail"]
        assert (await client.get("/livez")).status_code == 200  # probes are never limited


@pytest.mark.redis
async def test_rate_limit_is_shared_by_processes_through_redis(tmp_path: Path) -> None:
    settings = sqlite(
        tmp_path,
        redis_host="127.0.0.1",
        rate_limit_per_minute=4,
        redis_stream_name=f"ratelimit-test-{uuid.uuid4().hex}",
    )
    away_from_a_window_edge()
    caller = f"client-{uuid.uuid4().hex}"  # a fresh caller: no earlier run shares its window
    async with client_for(settings, caller) as first, client_for(settings, caller) as second:
        codes = [
            (await client.get("/api/alerts")).status_code
            for client in (first, second, first, second, second)
        ]
    assert codes == [200, 200, 200, 200, 429]


async def test_cors_allows_only_listed_origins(tmp_path: Path) -> None:
    settings = sqlite(tmp_path, cors_origins="https://dash.example.com")
    async with client_for(settings) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/api/posts", headers={"Origin": "https://dash.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
        denied = await client.options(
            "/api/posts", headers={"Origin": "https://evil.example.com", **preflight}
        )
        assert "access-control-allow-origin" not in denied.headers


async def test_probes(tmp_path: Path) -> None:
    async with client_for(sqlite(tmp_path)) as client:
        assert (await client.get("/livez")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.json()["database"] == "ok"
    down = Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere", embedded_worker=False)
    async with client_for(down) as client:
        assert (await client.get("/livez")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "down"


def sample(text: str, series: str) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_prometheus_metrics_count_requests_and_posts(tmp_path: Path) -> None:
    ingested = 'sentiment_posts_ingested_total{producer="api"}'
    async with client_for(sqlite(tmp_path)) as client:
        before = sample((await client.get("/metrics")).text, ingested)
        await client.get("/api/posts")
        await client.post("/api/posts", json=[POST, POST, POST])
        text = (await client.get("/metrics")).text
    assert sample(text, ingested) == before + 3
    assert sample(text, 'http_requests_total{handler="/api/posts",method="GET",status="2xx"}') >= 1
    assert sample(text, 'http_requests_total{handler="/api/posts",method="POST",status="2xx"}') >= 1
    assert 'http_request_duration_seconds_bucket{handler="/api/posts"' in text
    for name in ("sentiment_websocket_clients", "sentiment_alerts_firing", "sentiment_stream_lag"):
        assert f"# TYPE {name} gauge" in text


@pytest.mark.parametrize("redis_host", [None, pytest.param("127.0.0.1", marks=pytest.mark.redis)])
async def test_metrics_report_the_stream_backlog(tmp_path: Path, redis_host: str | None) -> None:
    stream = f"metrics-test-{uuid.uuid4().hex}"
    settings = sqlite(tmp_path, redis_host=redis_host, redis_stream_name=stream)
    async with client_for(settings) as client:
        await client.post("/api/posts", json=[POST] * 3)
        text = (await client.get("/metrics")).text
        if redis_host:
            await delete_stream(stream)
    assert sample(text, "sentiment_stream_length") == 3
    assert sample(text, "sentiment_stream_lag") == 3  # no worker has read them yet
    assert sample(text, "sentiment_stream_pending") == 0


async def delete_stream(stream: str) -> None:
    client = redis.Redis(host="127.0.0.1")
    await client.delete(stream)
    await client.aclose()
