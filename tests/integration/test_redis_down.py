"""Redis down: reads keep answering from the database, writes answer 503 + Retry-After, the
rate limiter fails open with one log line per outage, health says degraded; Redis back,
writes are taken again. A private Redis of the test's own is killed (never the shared one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sentiment_platform.bus import PendingPage
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.main import create_app
from tests.support.pipeline import make_posts
from tests.support.private_redis import PrivateRedis, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

POST = {"source": "test", "content": "hello"}


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.remove()


async def test_redis_down_reads_answer_writes_503_limiter_fails_open_once(
    private_redis: PrivateRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
        redis_host="127.0.0.1",
        redis_port=private_redis.port,
        rate_limit_per_minute=1_000,
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    caplog.set_level(logging.INFO, "sentiment_platform")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            assert (await http.post("/api/posts", json=POST)).status_code == 202

            private_redis.kill()
            for _ in range(20):
                assert (await http.get("/api/posts")).status_code == 200
                assert (await http.get("/api/metrics")).status_code == 200
            write = await http.post("/api/posts", json=POST)
            assert write.status_code == 503, write.text
            assert int(write.headers["Retry-After"]) >= 1
            assert "Redis is unavailable" in write.json()["detail"]
            health = await http.get("/api/health")
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert health.json()["redis"].startswith("down") and health.json()["backlog"] is None
            assert (await http.get("/metrics")).status_code == 200
            opened = [r for r in caplog.records if getattr(r, "event", "") == "ratelimit.fail_open"]
            assert len(opened) == 1, "one line per outage, not one per request"

            private_redis.start()  # empty: a restart without its file, the worst case
            await asyncio.sleep(1.1)  # the limiter asks Redis again at most once a second

            async def back() -> bool:
                return (await http.post("/api/posts", json=POST)).status_code == 202

            for _ in range(50):
                if await back():
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("writes not taken after Redis came back")
            assert (await http.get("/api/health")).json()["status"] == "ok"
            restored = [
                r for r in caplog.records if getattr(r, "event", "") == "ratelimit.restored"
            ]
            assert len(restored) == 1


@pytest.mark.redis
async def test_the_pending_cursor_moves_by_the_raw_entry_not_the_filtered_list(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry claimed by another consumer between XREADGROUP and XPENDING is filtered out
    of the page; the cursor still moves past it, so the worker neither re-reads nor stops."""
    client = redis_client(redis_settings)
    bus = RedisStreamBus.from_settings(redis_settings, client)
    try:
        await bus.ensure_group()
        await bus.publish(make_posts(5, "cur"))
        held = await bus.read("a", count=5, block_ms=10)
        real = bus._with_deliveries

        async def last_claimed_meanwhile(consumer: str, rows: list) -> list:
            return (await real(consumer, rows))[:-1]

        monkeypatch.setattr(bus, "_with_deliveries", last_claimed_meanwhile)
        page = await bus.read_pending("a", count=2)
        assert isinstance(page, PendingPage)
        assert [e.entry_id for e in page.entries] == [held[0].entry_id]
        assert page.cursor == held[1].entry_id
        nxt = await bus.read_pending("a", count=2, after=page.cursor)
        assert nxt.cursor == held[3].entry_id
        done = await bus.read_pending("a", count=2, after=held[4].entry_id)
        assert done.entries == [] and done.cursor is None
    finally:
        await client.aclose()
