"""Keyset pages, capped text-search counts, the export, the metrics cache and retention, over
the seeded store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from sentiment_platform import store
from sentiment_platform.api.answer_cache import SingleFlightCache
from sentiment_platform.api.schemas import PostsPage
from sentiment_platform.bus import ALERT, Event
from sentiment_platform.config import Settings
from sentiment_platform.domain import AlertItem, Analysis, Emotion, Post, PostView, Sentiment
from sentiment_platform.models.database import PostRollup, SentimentAnalysis, SocialMediaPost
from sentiment_platform.services.retention import purge_once
from sentiment_platform.store import post_pages as store_posts
from tests.support.app_client import app_client
from tests.support.seed import ANALYSED, T0, UNANALYSED, seed

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def seeded(api: httpx.AsyncClient, database) -> httpx.AsyncClient:
    await seed(database[1])
    return api


async def get(client: httpx.AsyncClient, path: str, **params) -> dict:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    "params",
    [{}, {"sentiment_filter": "negative"}, {"source": "reddit", "emotion": "joy"}, {"q": "launch"}],
)
async def test_cursor_pages_walk_every_post_once_in_order(seeded, params) -> None:
    everything = await get(seeded, "/api/posts", limit=100, offset=0, **params)
    walked, cursor, pages = [], None, 0
    while True:
        page = await get(
            seeded, "/api/posts", limit=7, **params, **({"cursor": cursor} if cursor else {})
        )
        walked += [item["post_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    total = everything["total"]
    assert len(walked) == total == len(set(walked))
    assert pages == max(1, -(-total // 7))  # no empty last page
    if total <= 100:
        assert walked == [item["post_id"] for item in everything["items"]]


async def test_offset_still_pages_and_totals_are_exact_at_any_edge(seeded) -> None:
    page = await get(seeded, "/api/posts", limit=5, offset=365)
    assert [i["post_id"] for i in page["items"]] == [f"p{i:04d}" for i in range(4, -1, -1)]
    assert page["next_cursor"] is None and page["total"] == ANALYSED + UNANALYSED
    # since/until off the minute: the partial minutes are counted on the index, exactly.
    since, until = T0 + timedelta(seconds=50), T0 + timedelta(minutes=3, seconds=1)
    page = await get(seeded, "/api/posts", since=since.isoformat(), until=until.isoformat())
    assert page["total"] == len(range(3, 10)) == len(page["items"])  # posts 3..9 (20 s apart)


async def test_text_search_total_is_capped_and_says_so(seeded, monkeypatch) -> None:
    monkeypatch.setattr(store_posts, "TEXT_COUNT_CAP", 10)
    page = await get(seeded, "/api/posts", q="seed post", limit=2)
    assert page["total"] == 10 and page["total_capped"] is True
    page = await get(seeded, "/api/posts", q="launch")
    assert page["total"] == 8 and page["total_capped"] is False


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_export_streams_every_matching_post(seeded, fmt) -> None:
    response = await seeded.get(
        "/api/posts/export", params={"format": fmt, "sentiment_filter": "negative"}
    )
    assert response.status_code == 200, response.text
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(response.text)))
    else:
        rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 108 and {row["sentiment"] for row in rows} == {"negative"}
    assert rows[0]["post_id"] > rows[-1]["post_id"]  # newest first


async def test_export_over_the_cap_without_a_range_is_refused(database) -> None:
    settings, session_factory = database
    await seed(session_factory)
    settings = settings.model_copy(update={"export_max_rows": 100})
    async with app_client(settings, session_factory) as (_, client):
        response = await client.get("/api/posts/export")
        assert response.status_code == 422
        assert "EXPORT_MAX_ROWS" in response.json()["detail"]
        ranged = await client.get(
            "/api/posts/export", params={"since": T0.isoformat(), "format": "jsonl"}
        )
    assert ranged.status_code == 200 and len(ranged.text.splitlines()) == 370


async def test_a_page_is_the_schema_byte_for_byte(seeded) -> None:
    """Items are encoded from the store's rows, not through the models: the body must be
    what validating and dumping `PostsPage` would have written."""
    for params in ({"limit": 30}, {"limit": 5, "sentiment_filter": "positive", "q": "launch"}):
        body = (await seeded.get("/api/posts", params=params)).content
        assert PostsPage.model_validate_json(body).model_dump_json().encode() == body
        assert json.loads(body)["items"]


async def test_timestamps_of_every_fraction_are_written_as_the_schema_writes_them(
    api: httpx.AsyncClient, database
) -> None:
    """PostgreSQL hands the page its timestamps as text, which drops a fraction's trailing
    zeros (`store.post_pages._with_text_stamps`): a page, and the export's rows, must still
    write each one as dumping `PostsPage` does, whatever its fraction, analysed or not."""
    fractions = [0, 500_000, 120, 999_999, 48_531, 10]
    posts = [
        Post(
            post_id=f"f{i}",
            source="twitter",
            content="a post",
            created_at=T0 + timedelta(seconds=i, microseconds=micro),
        )
        for i, micro in enumerate(fractions)
    ]
    analyses = [
        Analysis(
            post_id=post.post_id,
            sentiment=Sentiment.NEUTRAL,
            confidence=0.5,
            emotion=Emotion.NEUTRAL,
            emotion_confidence=0.5,
            model="m",
            analyzed_at=post.created_at + timedelta(microseconds=micro),
        )
        for post, micro in zip(posts[1:], fractions[1:], strict=True)  # the first: unanalysed
    ]
    async with database[1]() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    body = (await api.get("/api/posts", params={"limit": 10})).content
    assert PostsPage.model_validate_json(body).model_dump_json().encode() == body
    items = json.loads(body)["items"]
    assert [item["created_at"] for item in items] == [
        PostView.of(post, None).model_dump(mode="json")["created_at"] for post in reversed(posts)
    ]
    assert items[2]["created_at"] == "2026-01-15T10:00:03.999999Z"
    assert items[4]["created_at"] == "2026-01-15T10:00:01.500000Z"
    assert items[-1]["analyzed_at"] is None and items[0]["analyzed_at"].endswith("Z")
    exported = (await api.get("/api/posts/export", params={"format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["created_at"], r["analyzed_at"]) for r in rows] == [
        (item["created_at"], item["analyzed_at"] or "") for item in items
    ]


async def test_a_page_total_is_shared_for_a_second_its_items_never(seeded, database) -> None:
    _, session_factory = database
    first = await get(seeded, "/api/posts", limit=1)
    before = T0 - timedelta(hours=1)
    late = Post(post_id="late-1", source="twitter", content="a late post", created_at=before)
    analysis = Analysis(
        post_id="late-1",
        sentiment=Sentiment.NEGATIVE,
        confidence=0.9,
        emotion=Emotion.ANGER,
        emotion_confidence=0.8,
        model="test",
        analyzed_at=before,
    )
    async with session_factory() as session, session.begin():
        await store.save_batch(session, [late], [analysis])
    # An older post, so the first page is unchanged; the total shared for METRICS_CACHE_S.
    again = await get(seeded, "/api/posts", limit=1)
    assert again["total"] == first["total"]
    older = await get(seeded, "/api/posts", limit=1, until=T0.isoformat())
    assert older["items"][0]["post_id"] == "late-1" and older["total"] == 1
    other_filter = await get(seeded, "/api/posts", limit=1, source="twitter")
    assert other_filter["total"] == await _count(session_factory, source="twitter")
    await asyncio.sleep(1.1)
    assert (await get(seeded, "/api/posts", limit=1))["total"] == first["total"] + 1


async def _count(session_factory, **where) -> int:
    async with session_factory() as session:
        query = select(func.count()).select_from(SocialMediaPost).filter_by(**where)
        return int((await session.execute(query)).scalar_one())


@pytest.mark.parametrize("limit", [0, 1_000], ids=["unlimited", "rate-limited"])
async def test_an_alerts_page_is_shared_until_an_alert_is_heard(database, limit: int) -> None:
    """With a long METRICS_CACHE_S, a new alert still shows at once: the hub drops the
    shared pages when it hears an alert event (here on the in-process channel), before
    routing too (`api/fresh_answers.py`, only while the rate limit is off)."""
    settings, session_factory = database
    update = {"metrics_cache_s": 60.0, "rate_limit_per_minute": limit}
    async with app_client(settings.model_copy(update=update), session_factory) as (app, client):
        assert (await get(client, "/api/alerts"))["total"] == 0
        async with session_factory() as session, session.begin():
            alert = await store.insert_firing_alert(
                session,
                alert_type="negative_spike",
                severity="warning",
                message="negative share 55%",
                details={},
                created_at=T0,
            )
        assert alert is not None
        assert (await get(client, "/api/alerts"))["total"] == 0  # shared, not yet told
        events = app.state.api.runtime.events
        await events.publish(Event(ALERT, AlertItem.model_validate(alert).model_dump(mode="json")))
        for _ in range(100):
            if (await get(client, "/api/alerts"))["total"] == 1:
                break
            await asyncio.sleep(0.02)
        assert (await get(client, "/api/alerts"))["items"][0]["id"] == alert.id


async def test_a_computation_across_a_drop_is_not_kept() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache(ttl_s=60)
    version = 0

    async def read() -> int:
        answer = version
        await asyncio.sleep(0.05)  # what it read may change before it answers
        return answer

    reading = asyncio.create_task(cache.get("k", read))
    await asyncio.sleep(0.01)
    version = 1
    cache.drop()  # the change is announced while the old read is in flight
    assert await reading == 0
    assert await cache.get("k", read) == 1 and cache.computations == 2


async def test_single_flight_computes_once_per_key() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache(ttl_s=60)
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(0.05)
        return 42

    answers = await asyncio.gather(*(cache.get("k", slow) for _ in range(50)))
    assert answers == [42] * 50 and cache.computations == 1
    assert await cache.get("k", slow) == 42 and cache.computations == 1  # cached
    assert await cache.get("other", slow) == 42 and cache.computations == 2
    off: SingleFlightCache[int] = SingleFlightCache(ttl_s=0)
    await asyncio.gather(off.get("k", slow), off.get("k", slow))
    assert off.computations == 2


@pytest.mark.parametrize("serve_stale", [True, False])
async def test_an_expired_answer_serves_while_it_is_recomputed_only_if_stale_is_allowed(
    serve_stale: bool,
) -> None:
    """Serving stale, only the recomputing caller waits; the others get the previous answer.
    Otherwise (and after a drop, always) they wait for the new one."""
    cache: SingleFlightCache[str] = SingleFlightCache(ttl_s=0.01, serve_stale=serve_stale)
    release = asyncio.Event()

    async def fresh() -> str:
        await release.wait()
        return "new"

    async def first() -> str:
        return "old"

    assert await cache.get("k", first) == "old"
    await asyncio.sleep(0.02)  # expired
    recomputing = asyncio.create_task(cache.get("k", fresh))
    await asyncio.sleep(0)
    meanwhile = asyncio.create_task(cache.get("k", fresh))
    await asyncio.sleep(0.01)
    assert meanwhile.done() is serve_stale
    release.set()
    assert await recomputing == "new"
    assert await meanwhile == ("old" if serve_stale else "new")
    assert cache.computations == 2
    release.clear()
    cache.drop()
    assert await cache.get("k", first) == "old"
    await asyncio.sleep(0.02)
    cache.drop()  # nothing of before may be served now
    waiting = [asyncio.create_task(cache.get("k", fresh)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in waiting)
    release.set()
    assert [await task for task in waiting] == ["new", "new"]


async def test_retention_deletes_old_posts_in_batches_and_keeps_rollups(database) -> None:
    settings, session_factory = database
    await seed(session_factory)
    now = T0 + timedelta(days=1, hours=1)  # posts before T0 + 1 h are over a day old
    policy = Settings(database_url=settings.database_url, retention_days=1, retention_batch=100)
    purged = await purge_once(session_factory, policy, now=now)
    assert purged.posts == 180
    async with session_factory() as session:
        left = await session.scalar(select(func.count()).select_from(SocialMediaPost))
        analyses = await session.scalar(select(func.count()).select_from(SentimentAnalysis))
        cells = await session.scalar(
            select(func.sum(PostRollup.count)).where(PostRollup.grain == "d")
        )
    assert (left, analyses, cells) == (190, 180, 370)  # the rollups keep the long range


async def test_a_text_under_three_characters_scans_and_still_matches(seeded, database) -> None:
    """The API refuses it (a trigram index needs three), the CLI export allows it: a `LIKE`
    scan on SQLite, whose trigram table would match nothing."""
    _, session_factory = database
    where = store.PostFilter(text="LA", limit=100)  # "Launch", in every 50th seed post
    async with session_factory() as session:
        items, _ = await store.posts_page(session, where)
        assert await store.count_matches(session, where) == (8, False)
    assert [item["post_id"] for item in items] == [f"p{i:04d}" for i in range(350, -1, -50)]


async def test_the_export_walks_keyset_pages_to_the_end(seeded, database) -> None:
    _, session_factory = database
    async with session_factory() as session:
        everything = [
            item["post_id"]
            async for item in store.stream_posts(session, store.PostFilter(), chunk=7)
        ]
        negative = [
            item
            async for item in store.stream_posts(
                session, store.PostFilter(sentiment=Sentiment.NEGATIVE), chunk=7
            )
        ]
    assert len(everything) == ANALYSED + UNANALYSED == len(set(everything))
    created = [item["created_at"] for item in negative]
    assert created == sorted(created, reverse=True) and len(negative) == ANALYSED * 3 // 10
    assert {item["sentiment"] for item in negative} == {"negative"}
