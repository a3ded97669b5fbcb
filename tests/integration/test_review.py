"""The review queue (issue 30): a uniform random draw that never sorts the table, its record,
random and not-random labels, skips, and the uncertain posts; on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, PostLabel, Sentiment
from sentiment_platform.models.database import ReviewDraw
from sentiment_platform.services.trust import review
from tests.support.seed import ANALYSED, T0, seed

pytestmark = pytest.mark.asyncio


def _chi2_critical(df: int, z: float = 3.719) -> float:
    """The chi-square value with upper tail ~1e-4 (Wilson–Hilferty)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


async def _label(session_factory, post_ids: list[str], sentiment: str = "neutral") -> None:
    label = PostLabel(sentiment=Sentiment(sentiment))
    async with session_factory() as session, session.begin():
        for post_id in post_ids:
            assert await store.set_label(session, post_id, label, T0) is not None


@pytest.mark.parametrize("path", ["keys", "population"])
async def test_a_random_draw_is_uniform_over_the_filter(database, monkeypatch, path) -> None:
    """Many draws of 10 from the 360 analysed posts (10 unanalysed and 20 labelled among
    them): each eligible post is handed out about equally often (chi-square), the others
    never. `population`: the path a narrow filter takes (the scope read whole)."""
    _, sessions = database
    await seed(sessions)
    labelled = [f"p{i:04d}" for i in range(0, 360, 18)]
    await _label(sessions, labelled)
    if path == "population":
        monkeypatch.setattr(review, "MAX_KEYS", 1)  # guessing never pays: read the scope
    rng = random.Random(30)
    handed: Counter[str] = Counter()
    draws = 360
    async with sessions() as session:
        for _ in range(draws):
            items = await review.draw_random(session, store.LabelScope(), 10, rng=rng)
            assert len(items) == 10
            handed.update(item["post_id"] for item in items)
        await session.rollback()  # the record is not what this test is about
    eligible = [f"p{i:04d}" for i in range(ANALYSED) if f"p{i:04d}" not in labelled]
    assert set(handed) <= set(eligible)  # never an unanalysed or a labelled post
    expected = draws * 10 / len(eligible)
    statistic = sum((handed[post_id] - expected) ** 2 / expected for post_id in eligible)
    assert statistic < _chi2_critical(len(eligible) - 1), statistic


@asynccontextmanager
async def _statements(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[list[str]]:
    """Every statement the store runs meanwhile: on PostgreSQL as the server gets them (the
    hot reads go straight to asyncpg, past SQLAlchemy's events), on SQLite as sent."""
    seen: list[str] = []
    bind = sessions.kw["bind"]
    if bind.dialect.name == "postgresql":  # the tests' one connection, inside its transaction
        driver = (await bind.get_raw_connection()).driver_connection

        def logged(query) -> None:  # noqa: ANN001
            seen.append(query.query)

        driver.add_query_logger(logged)
        try:
            yield seen
        finally:
            driver.remove_query_logger(logged)
        return

    def note(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(bind.sync_engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(bind.sync_engine, "before_cursor_execute", note)


async def test_no_draw_orders_the_table_by_random(api, database) -> None:
    _, sessions = database
    await seed(sessions)
    async with _statements(sessions) as seen:
        for strategy in ("random", "uncertain"):
            answer = await api.get("/api/review", params={"strategy": strategy, "limit": 5})
            assert answer.status_code == 200 and len(answer.json()["items"]) == 5
    statements = [statement.lower() for statement in seen]
    assert not any("random()" in sql or "order by rand" in sql for sql in statements)
    dialect = sessions.kw["bind"].dialect.name
    by_key = (
        "social_media_posts.id = any (" if dialect == "postgresql" else "social_media_posts.id in ("
    )
    candidates = [sql for sql in statements if by_key in sql and "skipped_at is not null" in sql]
    assert candidates  # the random draw looked its candidates up by key


async def _drawn(session_factory) -> list[tuple[str, str]]:
    async with session_factory() as session:
        rows = await session.execute(select(ReviewDraw.strategy, ReviewDraw.post_ref))
        return [(strategy, str(ref)) for strategy, ref in rows]


async def test_draws_are_recorded_and_only_labels_on_drawn_posts_are_random(api, database) -> None:
    _, sessions = database
    await seed(sessions)
    drawn = (await api.get("/api/review", params={"limit": 5})).json()
    assert drawn["strategy"] == "random" and len(drawn["items"]) == 5
    assert all(item["label"] is None and item["sentiment"] for item in drawn["items"])
    uncertain = (await api.get("/api/review", params={"strategy": "uncertain", "limit": 3})).json()
    records = Counter(strategy for strategy, _ in await _drawn(sessions))
    assert records == {"random": 5, "uncertain": 3}

    drawn_ids = [item["post_id"] for item in drawn["items"]]
    uncertain_ids = [i["post_id"] for i in uncertain["items"] if i["post_id"] not in drawn_ids]
    never_drawn = next(
        f"p{i:04d}" for i in range(ANALYSED) if f"p{i:04d}" not in drawn_ids + uncertain_ids
    )
    for post_id in [*drawn_ids[:3], *uncertain_ids[:2], never_drawn]:
        answer = await api.put(f"/api/posts/{post_id}/label", json={"sentiment": "negative"})
        assert answer.status_code == 200
    quality = (await api.get("/api/quality")).json()
    assert quality["labels"] == 6
    assert quality["random_labels"] == 3  # not the uncertain ones, not the one never drawn
    assert quality["skipped"] == 0


async def test_a_labelled_post_a_random_draw_meets_becomes_a_random_label(api, database) -> None:
    """A post labelled before any draw chose it is not handed out, but a random draw that
    meets it records it: its label is a random label for the draw's filter, not wider."""
    _, sessions = database
    at = T0 + timedelta(days=1)
    posts = [
        Post(post_id=f"tiny{i}", source="tiny", content=f"t {i}", created_at=at) for i in range(4)
    ]
    analyses = [
        Analysis(p.post_id, Sentiment.NEGATIVE, 0.8, Emotion.ANGER, 0.5, "m", at) for p in posts
    ]
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    await seed(sessions)
    await api.put("/api/posts/tiny0/label", json={"sentiment": "neutral"})
    drawn = (await api.get("/api/review", params={"source": "tiny", "limit": 10})).json()
    assert sorted(item["post_id"] for item in drawn["items"]) == ["tiny1", "tiny2", "tiny3"]
    tiny = (await api.get("/api/quality", params={"source": "tiny"})).json()
    assert (tiny["labels"], tiny["random_labels"]) == (1, 1)
    everywhere = (await api.get("/api/quality")).json()
    assert (everywhere["labels"], everywhere["random_labels"]) == (1, 0)  # drawn from one source


async def test_skips_are_recorded_counted_and_not_handed_out_again(api, database) -> None:
    _, sessions = database
    at = T0 + timedelta(days=1)
    posts = [Post(post_id=f"s{i}", source="few", content=f"s {i}", created_at=at) for i in range(6)]
    analyses = [
        Analysis(p.post_id, Sentiment.NEUTRAL, 0.8, Emotion.NEUTRAL, 0.5, "m", at) for p in posts
    ]
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    drawn = [
        i["post_id"] for i in (await api.get("/api/review", params={"limit": 2})).json()["items"]
    ]
    assert (await api.post(f"/api/review/{drawn[0]}/skip")).status_code == 204
    assert (await api.post(f"/api/review/{drawn[0]}/skip")).status_code == 204  # once is enough
    never = next(post.post_id for post in posts if post.post_id not in drawn)
    refused = await api.post(f"/api/review/{never}/skip")
    assert refused.status_code == 409 and never in refused.json()["detail"]
    assert (await api.post("/api/review/nobody/skip")).status_code == 404
    assert (await api.get("/api/quality")).json()["skipped"] == 1

    rest = (await api.get("/api/review", params={"limit": 10})).json()["items"]
    assert drawn[0] not in {item["post_id"] for item in rest} and len(rest) == 5
    uncertain = (await api.get("/api/review", params={"strategy": "uncertain"})).json()["items"]
    assert drawn[0] not in {item["post_id"] for item in uncertain}

    await api.put(f"/api/posts/{drawn[0]}/label", json={"sentiment": "positive"})
    after = (await api.get("/api/quality")).json()
    assert (after["skipped"], after["random_labels"]) == (0, 1)  # labelled after all: no hole


async def test_uncertain_gives_the_least_confident_of_the_newest_posts(
    api, database, monkeypatch
) -> None:
    _, sessions = database
    confidences = [0.9, 0.41, 0.7, 0.35, 0.95, 0.5, 0.38, 0.6, 0.8, 0.45]
    posts = [
        Post(post_id=f"u{i}", source="u", content=f"u {i}", created_at=T0 + timedelta(minutes=i))
        for i in range(len(confidences))
    ]
    analyses = [
        Analysis(p.post_id, Sentiment.NEUTRAL, c, Emotion.NEUTRAL, 0.5, "m", T0)
        for p, c in zip(posts, confidences, strict=True)
    ]
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    await api.put("/api/posts/u3/label", json={"sentiment": "neutral"})  # labelled: not again

    async def uncertain(limit: int) -> list[str]:
        answer = await api.get("/api/review", params={"strategy": "uncertain", "limit": limit})
        return [item["post_id"] for item in answer.json()["items"]]

    assert await uncertain(4) == ["u6", "u1", "u9", "u5"]  # 0.38, 0.41, 0.45, 0.5
    monkeypatch.setattr(review, "UNCERTAIN_POOL", 4)  # only the 4 newest: u9, u8, u7, u6
    assert await uncertain(2) == ["u6", "u9"]
