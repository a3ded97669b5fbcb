"""Timestamps at the calendar's edges (issue 29, items 5 and 6), on SQLite and PostgreSQL.

Posts already stored at 0001-01-01 (PostgreSQL's `-infinity`, as asyncpg wrote it) and at
the last instant (`infinity`) page, export and count like any other; a metrics or posts
range anywhere in years 1-9999 answers 200 or a 422 naming a parameter, never a 5xx; and a
post dated before 1970 is refused by every way in: a bad row of `ingest file`, a dead
letter of the worker (the API's 422 is in test_bad_input.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import decode_post
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.pipeline.ingester import ingest_file
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.reporting.aggregator import Bucket
from tests.support.app_client import app_client
from tests.support.pipeline import KeywordAnalyzer, counts, wait_until

pytestmark = pytest.mark.asyncio

FIRST = datetime(1, 1, 1, tzinfo=UTC)  # PostgreSQL: -infinity
LAST = datetime.max.replace(tzinfo=UTC)  # PostgreSQL: infinity
# Written around today's validation, newest first, with the stamps the API must show.
STORED = [
    ("last", LAST, "9999-12-31T23:59:59.999999Z"),
    ("now", datetime(2026, 1, 15, 10, tzinfo=UTC), "2026-01-15T10:00:00Z"),
    ("second", datetime(1, 1, 1, 0, 1, tzinfo=UTC), "0001-01-01T00:01:00Z"),
    ("first", FIRST, "0001-01-01T00:00:00Z"),
]


@pytest_asyncio.fixture
async def edges(api: httpx.AsyncClient, database) -> httpx.AsyncClient:
    posts = [
        Post.model_construct(post_id=pid, source="s", content=pid, author=None, created_at=at)
        for pid, at, _ in STORED
    ]
    analyses = [
        Analysis(
            post_id=post.post_id,
            sentiment=Sentiment.NEGATIVE,
            confidence=0.9,
            emotion=Emotion.ANGER,
            emotion_confidence=0.9,
            model="m",
            analyzed_at=datetime(2026, 1, 15, 11, tzinfo=UTC),
        )
        for post in posts
    ]
    async with database[1]() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    return api


async def _get(client: httpx.AsyncClient, path: str, **params: object) -> httpx.Response:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_pages_walk_past_stored_infinities_with_their_cursors(edges, limit) -> None:
    walked, cursor = [], None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = (await _get(edges, "/api/posts", limit=limit, **extra)).json()
        walked += [(item["post_id"], item["created_at"]) for item in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert walked == [(pid, stamp) for pid, _, stamp in STORED]


async def test_exports_and_bounded_pages_write_the_edges_as_instants(edges) -> None:
    stamps = [stamp for *_, stamp in STORED]
    lines = (await _get(edges, "/api/posts/export", format="jsonl")).text.splitlines()
    assert [json.loads(line)["created_at"] for line in lines] == stamps
    rows = csv.DictReader(io.StringIO((await _get(edges, "/api/posts/export", format="csv")).text))
    assert [row["created_at"] for row in rows] == stamps
    early = (await _get(edges, "/api/posts", until="0001-01-01T00:00:30Z")).json()
    assert [item["post_id"] for item in early["items"]] == ["first"]
    since = (await _get(edges, "/api/posts", since="0001-01-01T00:00:00Z", limit=2)).json()
    assert len(since["items"]) == 2 and since["next_cursor"]


@pytest.mark.parametrize("bucket", [None, *Bucket])
async def test_metrics_from_year_1_count_the_stored_edges(edges, bucket) -> None:
    params = {"start": "0001-01-01T00:00:00Z"} | ({"bucket": bucket.value} if bucket else {})
    body = (await _get(edges, "/api/metrics", **params)).json()
    assert body["total"] == 3  # all but `last`, after now
    first_minutes = {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T00:05:00Z"}
    body = (await _get(edges, "/api/metrics", **first_minutes, bucket="minute")).json()
    assert body["total"] == 2
    assert [p["total"] for p in body["timeline"]] == [1, 1, 0, 0, 0]
    assert body["timeline"][0]["bucket_start"] == "0001-01-01T00:00:00Z"


async def test_the_last_drawable_end_answers_with_every_bucket(api) -> None:
    for bucket in Bucket:
        params = {"start": "9999-11-01T00:00:00Z", "end": "9999-12-01T00:00:00Z"}
        body = (await _get(api, "/api/metrics", **params, bucket=bucket.value)).json()
        assert body["timeline"][-1]["bucket_start"] < "9999-12-01"
    longest = {"end": "9999-12-01T00:00:00Z", "window_minutes": 60 * 24 * 366 * 100}
    assert (await _get(api, "/api/metrics", **longest)).json()["bucket"] == "month"


INSTANTS = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.sampled_from(
        [
            datetime(1, 1, 1),
            datetime(1, 1, 1, 0, 1),
            datetime(1969, 12, 31, 23, 59),
            datetime(9999, 12, 1),
            datetime(9999, 12, 31, 23, 59),
            datetime(9999, 12, 31, 23, 59, 59, 999999),
        ]
    ),
).map(lambda moment: moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))
MAYBE = st.none() | INSTANTS


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start=MAYBE,
    end=MAYBE,
    window=st.none() | st.integers(1, 60 * 24 * 366 * 100) | st.sampled_from([1, 10**9]),
    bucket=st.none() | st.sampled_from([b.value for b in Bucket]),
)
async def test_any_range_in_the_calendar_is_200_or_a_422_naming_a_parameter(
    edges, start, end, window, bucket
) -> None:
    asked = {"start": start, "end": end, "window_minutes": window, "bucket": bucket}
    params = {name: value for name, value in asked.items() if value is not None}
    for path, query in (
        ("/api/metrics", params),
        ("/api/posts", {"since": start, "until": end, "limit": 2}),
        ("/api/posts/export", {"since": start, "until": end, "format": "jsonl"}),
    ):
        query = {name: value for name, value in query.items() if value is not None}
        response = await edges.get(path, params=query)
        assert response.status_code in (200, 422), (path, query, response.text)
        if response.status_code == 422:
            said = json.dumps(response.json()["detail"])
            assert any(name in said for name in query), (path, query, said)


async def test_a_file_row_before_1970_is_reported_and_the_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    rows = [
        {"source": "news", "content": "kept", "created_at": "1970-01-01T00:00:00Z"},
        {"source": "news", "content": "too old", "created_at": "0001-01-01T00:00:00Z"},
        {"source": "news", "content": "also kept"},
        {"source": "news", "content": "just too old", "created_at": "1969-12-31T23:59:59Z"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    bus = MemoryBus()
    report = await ingest_file(path, bus, batch_size=10)
    assert report.sent == 2
    assert [line for line, _ in report.bad] == [2, 4]
    assert all(why.startswith("created_at:") and "1970" in why for _, why in report.bad)
    sent = [decode_post(entry.fields).content for entry in await bus.read("t", 10, 10)]
    assert sent == ["kept", "also kept"]


@pytest_asyncio.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"))
    await upgrade_schema(engine)
    yield create_session_factory(engine)
    await engine.dispose()


async def test_a_stream_entry_before_1970_is_dead_lettered_not_stored_nor_dropped(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A producer that bypasses the API: the worker's decoding holds it to the same rule."""
    bus = MemoryBus()
    old = Post.model_construct(
        post_id="old", source="s", content="from 1969", author=None, created_at=FIRST
    )
    await bus.publish([Post(post_id="fine", source="s", content="today"), old])
    config = WorkerConfig(batch_size=10, block_ms=50)
    worker = Worker(bus, MemoryEvents(), sessions, KeywordAnalyzer(), "w", config)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:

        async def settled() -> bool:
            return len(bus.dead) == 1 and await counts(sessions) == (1, 1)

        await wait_until(settled, 10, "one post stored and one dead letter")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    [letter] = bus.dead
    assert json.loads(letter["data"])["post_id"] == "old"
    assert "created_at" in letter["error"] and "1970" in letter["error"]


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_what_only_raw_sql_can_store_pages_and_exports_to_an_end(database) -> None:
    """PostgreSQL holds instants no datetime can (BC, after 9999) and both infinities:
    written by hand, they read as the calendar's first or last instant, and a walk through
    them ends (the migration 0007 moves them where they belong)."""
    settings, session_factory = database
    stamps = ["-infinity", "infinity", "0044-03-15 12:00:00+00 BC", "10000-01-01 00:00:00+00"]
    async with session_factory() as session, session.begin():
        for i, stamp in enumerate(stamps * 2):
            await session.execute(
                text(
                    "INSERT INTO social_media_posts (post_id, source, content, created_at, "
                    f"ingested_at) VALUES ('raw{i}', 's', 'raw', '{stamp}', now())"
                )
            )
    async with app_client(settings, session_factory) as (_, client):
        for limit in (1, 3):
            cursor, pages = None, 0
            while pages < 20:
                extra = {"cursor": cursor} if cursor else {}
                page = (await _get(client, "/api/posts", limit=limit, **extra)).json()
                pages += 1
                assert {_instant(item) for item in page["items"]} <= {FIRST, LAST}
                if (cursor := page["next_cursor"]) is None:
                    break
            assert cursor is None, "the walk never ended"
        lines = (await _get(client, "/api/posts/export", format="jsonl")).text.splitlines()
        assert sorted(_instant(json.loads(line)) for line in lines) == [FIRST] * 4 + [LAST] * 4


def _instant(item: dict) -> datetime:
    return datetime.fromisoformat(item["created_at"])
