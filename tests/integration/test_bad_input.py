"""Bad input is a 422 naming the field; a dead database is a 503 with a reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.api.deps import parts_of
from sentiment_platform.config import Settings
from sentiment_platform.domain import MAX_CLOCK_SKEW, utcnow
from sentiment_platform.main import create_app
from sentiment_platform.models.database import SocialMediaPost

pytestmark = pytest.mark.asyncio

# Valid ISO-8601 that leaves the calendar once converted to UTC (an OverflowError, once a 500).
PAST_9999 = "9999-12-31T23:59:59-05:00"
BEFORE_YEAR_1 = "0001-01-01T00:00:00+05:00"


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
        ("/api/metrics", {"bucket": "year"}, "bucket"),
        ("/api/posts", {"cursor": "not a cursor"}, "cursor"),
        ("/api/posts", {"cursor": "MjAyNi0wMS0wMXwx"}, "cursor"),  # no time zone: not ours
        ("/api/posts", {"q": "ab"}, "q"),
        ("/api/posts/export", {"format": "xml"}, "format"),
        ("/api/metrics", {"window_minutes": 0}, "window_minutes"),
        ("/api/alerts", {"limit": 101}, "limit"),
        ("/api/alerts", {"since": "not-a-date"}, "since"),
        ("/api/posts", {"since": PAST_9999}, "since"),
        ("/api/posts", {"until": PAST_9999}, "until"),
        ("/api/posts", {"since": BEFORE_YEAR_1}, "since"),
        ("/api/metrics", {"start": PAST_9999}, "start"),
        ("/api/metrics", {"end": PAST_9999}, "end"),
        ("/api/metrics", {"start": BEFORE_YEAR_1, "end": "2026-01-01T00:00:00Z"}, "start"),
        ("/api/metrics", {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T00:00:00Z"}, "end"),
        # The timeline's last bucket would end past the calendar (once a 500: OverflowError).
        ("/api/metrics", {"end": "9999-12-31T23:59:59Z"}, "end"),
        ("/api/metrics", {"end": "9999-12-31T23:59:59Z", "bucket": "minute"}, "end"),
        ("/api/metrics", {"start": "9999-12-01T00:00:00Z", "bucket": "month"}, "end"),
        ("/api/metrics", {"start": "9999-12-02T00:00:00Z", "end": "9999-12-31T00:00:00Z"}, "end"),
        ("/api/metrics", {"end": "9999-12-30T00:00:00Z", "bucket": "week"}, "end"),
        ("/api/metrics", {"end": "0001-01-02T00:00:00Z", "window_minutes": 5000}, "window_minutes"),
        ("/api/alerts", {"since": PAST_9999}, "since"),
        # PostgreSQL cannot compare text with a NUL: refused in any parameter, not a 500.
        ("/api/posts", {"q": "fine\x00not"}, "q"),
        ("/api/posts", {"source": "twitter\x00"}, "source"),
        ("/api/posts", {"sentiment_filter": "\x00"}, "sentiment_filter"),
        ("/api/posts", {"since": "2026-01-01\x00"}, "since"),
        ("/api/posts", {"limit": "5\x00"}, "limit"),
        ("/api/metrics", {"source": "\x00"}, "source"),
        ("/api/metrics", {"bucket": "day\x00"}, "bucket"),
        ("/api/alerts", {"since": "\x00"}, "since"),
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
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
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


@dataclass
class Served:
    client: httpx.AsyncClient
    app: FastAPI
    session_factory: async_sessionmaker[AsyncSession]

    async def nothing_kept(self) -> None:
        assert (await parts_of(self.app).runtime.bus.stats()).length == 0
        async with self.session_factory() as session:
            assert await session.scalar(select(func.count()).select_from(SocialMediaPost)) == 0


@pytest_asyncio.fixture
async def served(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> AsyncIterator[Served]:
    """The `api` client, with its app and store, to look at what the bus and the store hold."""
    settings, session_factory = database
    app = create_app(settings, sessions=session_factory)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Served(client, app, session_factory)


def _ahead(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat()


GOOD = {"source": "x", "content": "fine"}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (GOOD | {"created_at": PAST_9999}, ["body", "post", "created_at"]),
        (GOOD | {"created_at": BEFORE_YEAR_1}, ["body", "post", "created_at"]),
        (GOOD | {"created_at": "2999-01-01T00:00:00Z"}, ["body", "post", "created_at"]),
        # Before 1970: 0001-01-01T00:00:00Z was stored as PostgreSQL's -infinity (issue 29).
        (GOOD | {"created_at": "0001-01-01T00:00:00Z"}, ["body", "post", "created_at"]),
        (GOOD | {"created_at": "1969-12-31T23:59:59.999999Z"}, ["body", "post", "created_at"]),
        ([GOOD, GOOD | {"created_at": "1900-01-01T00:00:00Z"}], ["body", "batch", 1, "created_at"]),
        ([GOOD, GOOD | {"created_at": PAST_9999}], ["body", "batch", 1, "created_at"]),
        ([GOOD, GOOD | {"source": "x\x00"}], ["body", "batch", 1, "source"]),
        (GOOD | {"author": "\x00"}, ["body", "post", "author"]),
        (GOOD | {"post_id": "id\x00"}, ["body", "post", "post_id"]),
    ],
)
async def test_bad_posts_at_the_edges_are_422_and_nothing_is_kept(
    served: Served, body: object, where: list
) -> None:
    response = await served.client.post("/api/posts", json=body)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [where]
    await served.nothing_kept()


async def test_created_at_may_be_ahead_by_the_clock_skew_allowance_but_no_more(
    served: Served,
) -> None:
    too_far = await served.client.post(
        "/api/posts", json=GOOD | {"created_at": _ahead(MAX_CLOCK_SKEW + timedelta(minutes=5))}
    )
    assert too_far.status_code == 422, too_far.text
    assert too_far.json()["detail"][0]["loc"] == ["body", "post", "created_at"]
    assert "1 day ahead" in too_far.json()["detail"][0]["msg"]
    await served.nothing_kept()

    skewed = await served.client.post(
        "/api/posts", json=GOOD | {"created_at": _ahead(MAX_CLOCK_SKEW - timedelta(minutes=5))}
    )
    assert skewed.status_code == 202, skewed.text
    assert (await parts_of(served.app).runtime.bus.stats()).length == 1


async def test_created_at_may_be_the_epoch_itself_but_not_a_moment_before(served: Served) -> None:
    before = await served.client.post(
        "/api/posts", json=GOOD | {"created_at": "1969-12-31T23:59:59Z"}
    )
    assert before.status_code == 422, before.text
    assert "before 1970-01-01T00:00:00Z" in before.json()["detail"][0]["msg"]
    epoch = await served.client.post(
        "/api/posts", json=GOOD | {"created_at": "1970-01-01T00:00:00Z"}
    )
    assert epoch.status_code == 202, epoch.text
    assert (await parts_of(served.app).runtime.bus.stats()).length == 1
