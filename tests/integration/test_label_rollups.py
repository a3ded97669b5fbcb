"""The label rollups (0011, issue 30) on SQLite and PostgreSQL: every write that changes a
random label keeps them equal to what a rebuild computes from the posts, and a range takes
the labels whose post's widest random draw covers it, the same in `/api/metrics`'s estimate
and in `/api/quality`."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text, update

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.database import LabelRollup, SocialMediaPost
from tests.support.app_client import app_client
from tests.support.seed import T0

pytestmark = pytest.mark.asyncio

N, U, P = Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE


async def _save(sessions, rows: list[tuple[str, str, int, Sentiment, str | None]]) -> None:
    """(post_id, source, minute after T0, prediction, label brought with the post)."""
    posts, analyses = [], []
    for post_id, source, minute, prediction, label in rows:
        at = T0 + timedelta(minutes=minute)
        posts.append(Post(post_id=post_id, source=source, content=post_id, created_at=at,
                          label=label))  # fmt: skip
        analyses.append(Analysis(post_id, prediction, 0.7, Emotion.NEUTRAL, 0.5, "m-a", at))
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)


async def _cells(sessions) -> Counter[tuple[object, ...]]:
    rows = LabelRollup.__table__.c
    async with sessions() as session:
        found = (await session.execute(select(LabelRollup.__table__))).all()
    key = [column.name for column in rows if column.name != "count"]
    return Counter({tuple(getattr(row, name) for name in key): row.count for row in found
                    if row.count})  # fmt: skip


async def _rebuilt(sessions) -> Counter[tuple[object, ...]]:
    async with sessions() as session, session.begin():
        await store.rollups.rebuild(session)
    return await _cells(sessions)


async def _label(http: httpx.AsyncClient, post_id: str, sentiment: Sentiment) -> None:
    answer = await http.put(f"/api/posts/{post_id}/label", json={"sentiment": sentiment.value})
    assert answer.status_code == 200, answer.text


def _day_total(cells: Counter[tuple[object, ...]]) -> Counter[tuple[object, ...]]:
    """(model, prediction, label) → count at the day grain."""
    found: Counter[tuple[object, ...]] = Counter()
    for (grain, _, _, _, _, model, prediction, label, *_), count in cells.items():
        if grain == "d":
            found[(model, prediction, label)] += count
    return found


async def test_every_write_keeps_the_cells_a_rebuild_gives(database) -> None:
    settings, sessions = database
    rows = [(f"p{i}", "news" if i < 8 else "blog", i, (N, U, P)[i % 3], None) for i in range(12)]
    rows[0] = ("p0", "news", 0, N, "positive")  # brought in labelled
    await _save(sessions, rows)
    async with app_client(settings, sessions) as (_, http):
        await _label(http, "p1", N)  # before any draw: not a random label
        assert await _cells(sessions) == Counter()
        drawn = (await http.get("/api/review", params={"limit": 100})).json()["items"]
        assert len(drawn) == 10  # p0 and p1 met labelled: recorded, not handed out
        met = {("m-a", "negative", "positive"): 1, ("m-a", "neutral", "negative"): 1}
        assert _day_total(await _cells(sessions)) == met
        for post_id, label in (("p2", P), ("p3", N), ("p4", P), ("p9", U)):
            await _label(http, post_id, label)
        await _label(http, "p3", N)  # the same label again: nothing moves
        await _label(http, "p4", U)  # changed: moved
        assert (await http.delete("/api/posts/p9/label")).status_code == 204
        # a narrower draw of a drawn post: its widest draw stays the unfiltered one
        await http.get("/api/review", params={"limit": 5, "source": "news"})
        async with sessions() as session, session.begin():  # a rescore moves p2's prediction
            posts = SocialMediaPost.__table__
            await session.execute(
                update(posts)
                .where(posts.c.post_id == "p2")
                .values(sentiment="neutral", model="m-b")
            )
        cells = await _cells(sessions)
        assert _day_total(cells) == {
            ("m-a", "negative", "positive"): 1,  # p0
            ("m-a", "neutral", "negative"): 1,  # p1
            ("m-a", "negative", "negative"): 1,  # p3
            ("m-b", "neutral", "positive"): 1,  # p2, rescored
            ("m-a", "neutral", "neutral"): 1,  # p4
        }
        assert all(key[8] for key in cells)  # every one by a draw with no source filter
        assert cells == await _rebuilt(sessions)
        quality = (await http.get("/api/quality")).json()
        assert quality["random_labels"] == 5 and quality["labels"] == 5


async def test_a_range_takes_the_labels_of_the_draws_covering_it(database) -> None:
    """Draw A: news only, any time; draw B: every source, minutes 10-20. Each range's
    estimate counts the labels whose draw covers it, as quality does."""
    settings, sessions = database
    rows = [(f"q{i}", "news" if i % 2 else "blog", i, N, None) for i in range(30)]
    await _save(sessions, rows)
    minute = lambda m: (T0 + timedelta(minutes=m)).isoformat()  # noqa: E731
    async with app_client(settings, sessions) as (_, http):
        a = await http.get(
            "/api/review",
            params={"limit": 4, "source": "news", "since": minute(0), "until": minute(9)},
        )
        # (a draw of news over minutes 0-9, then one unbounded in time below)
        b = await http.get("/api/review", params={"limit": 4, "since": minute(10),
                                                  "until": minute(20)})  # fmt: skip
        for item in a.json()["items"] + b.json()["items"]:
            await _label(http, item["post_id"], P)
        news = (await http.get("/api/review", params={"limit": 3, "source": "news"})).json()
        for item in news["items"]:
            await _label(http, item["post_id"], U)
        ranges = [
            (0, 30, None, 0),  # no draw covers every source over minutes 0-30
            (0, 30, "news", None),  # the unbounded news draw (and A's posts it met)
            (2, 8, "news", None),  # the news draws, each where it lies
            (10, 20, None, 4),  # draw B
            (12, 18, "news", None),  # draw B's news posts and the unbounded news draw's
        ]
        for start, end, source, expected in ranges:
            scope = {"since": minute(start), "until": minute(end)}
            scope |= {"source": source} if source else {}
            quality = (await http.get("/api/quality", params=scope)).json()
            metrics_scope = {"start": scope["since"], "end": scope["until"]}
            metrics_scope |= {"source": source} if source else {}
            metrics = (await http.get("/api/metrics", params=metrics_scope)).json()
            assert metrics["estimate"]["labels"] == quality["random_labels"], scope
            if expected is not None:
                assert quality["random_labels"] == expected, scope
        assert await _cells(sessions) == await _rebuilt(sessions)


async def test_a_copy_mark_moves_the_label_and_unique_leaves_it_out(database) -> None:
    """A labelled post marked a copy later (`duplicate_of` set) moves its cells to the
    copies' key, as a rebuild computes; `unique=true` then reads its label no more."""
    settings, sessions = database
    await _save(sessions, [(f"c{i}", "news", i, N, None) for i in range(4)])
    window = {"start": T0.isoformat(), "end": (T0 + timedelta(minutes=5)).isoformat()}
    async with app_client(settings, sessions) as (_, http):
        await http.get("/api/review", params={"limit": 4})
        for i in range(4):
            await _label(http, f"c{i}", P)

        async def estimated(unique: str) -> int:
            answer = await http.get("/api/metrics", params={**window, "unique": unique})
            assert answer.status_code == 200, answer.text
            return int(answer.json()["estimate"]["labels"])

        assert (await estimated("false"), await estimated("true")) == (4, 4)
        async with sessions() as session, session.begin():
            posts = SocialMediaPost.__table__
            await session.execute(
                update(posts).where(posts.c.post_id == "c3").values(duplicate_of="c0")
            )
        cells = await _cells(sessions)
        copies = {key[4]: count for key, count in cells.items() if key[0] == "d"}
        assert copies == {False: 3, True: 1}
        assert cells == await _rebuilt(sessions)
        assert (await estimated("false"), await estimated("true")) == (4, 3)


async def test_retention_purge_drops_old_cells(database) -> None:
    settings, sessions = database
    await _save(sessions, [("r0", "news", 0, N, None)])
    async with app_client(settings, sessions) as (_, http):
        await http.get("/api/review", params={"limit": 1})
        await _label(http, "r0", P)
    assert sum(_day_total(await _cells(sessions)).values()) == 1
    async with sessions() as session, session.begin():
        await store.rollups.purge(session, T0 + timedelta(days=1))
        left = (await session.execute(text("SELECT count(*) FROM label_rollups"))).scalar()
    assert left == 0
