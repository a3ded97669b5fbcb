"""A post_id the store already holds, or one repeated within a request, is answered as a
duplicate and not queued again: a retry with the same post_id is idempotent and says so.
On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from sentiment_platform import store
from sentiment_platform.api.deps import parts_of
from sentiment_platform.bus import decode_post
from sentiment_platform.config import Settings
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.main import create_app
from tests.support.app_client import app_client

pytestmark = pytest.mark.asyncio


def _analysis(post: Post) -> Analysis:
    return Analysis(
        post_id=post.post_id,
        sentiment=Sentiment.POSITIVE,
        confidence=0.9,
        emotion=Emotion.JOY,
        emotion_confidence=0.9,
        model="test",
        analyzed_at=utcnow(),
    )


async def _store(session_factory, posts: list[Post]) -> None:
    """What the worker does with what it reads off the bus."""
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, [_analysis(post) for post in posts])


async def test_stored_and_repeated_post_ids_are_reported_and_not_queued(database) -> None:
    settings, session_factory = database
    earlier = Post(post_id="dup-1", source="a", content="first copy", created_at=utcnow())
    await _store(session_factory, [earlier])
    body = [
        {"post_id": "dup-1", "source": "b", "content": "the same id from another source"},
        {"post_id": "new-1", "source": "a", "content": "a new post"},
        {"post_id": "new-1", "source": "a", "content": "the same new post twice"},
        {"source": "a", "content": "no post_id: one is generated"},
    ]
    async with app_client(settings, session_factory) as (app, client):
        answer = await client.post("/api/posts", json=body)
        assert answer.status_code == 202, answer.text
        taken = answer.json()
        generated = taken["post_ids"][3]
        assert taken == {
            "accepted": 2,
            "post_ids": ["dup-1", "new-1", "new-1", generated],
            "duplicates": ["dup-1", "new-1"],
            "duplicates_checked": True,
        }
        bus = parts_of(app).runtime.bus
        queued = await bus.read("test", count=10, block_ms=10)
        posts = [decode_post(entry.fields) for entry in queued]
        assert [(p.post_id, p.content) for p in posts] == [
            ("new-1", "a new post"),  # the first of the two
            (generated, "no post_id: one is generated"),
        ]
        await _store(session_factory, posts)
        await bus.ack([entry.entry_id for entry in queued])

        # The producer never saw the 202 and sends the same body again.
        retry = await client.post("/api/posts", json=body)
        assert retry.status_code == 202
        again = retry.json()
        assert again["accepted"] == 1  # only the post without a post_id: a new one
        assert again["duplicates"] == ["dup-1", "new-1"]
        assert again["post_ids"][:3] == ["dup-1", "new-1", "new-1"]
        one = await client.post("/api/posts", json=body[1])  # a single post, not a list
        assert one.json() == {
            "accepted": 0,
            "post_ids": ["new-1"],
            "duplicates": ["new-1"],
            "duplicates_checked": True,
        }
        [left] = await bus.read("test", count=10, block_ms=10)
        assert decode_post(left.fields).post_id == again["post_ids"][3]
    async with session_factory() as session:
        [stored] = await store.posts_by_ids(session, ["dup-1"])
    assert stored.content == "first copy"  # the first copy stays; nothing was overwritten


async def test_a_store_that_cannot_answer_leaves_the_write_unchecked_not_refused() -> None:
    """The bus takes posts while the store is away, as before: the answer says the check
    was skipped, and the worker will still store each post_id once."""
    app = create_app(
        Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere", embedded_worker=False)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            body = [{"post_id": f"x{i}", "source": "a", "content": "hello"} for i in (1, 2, 1)]
            answer = await client.post("/api/posts", json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "accepted": 2,
        "post_ids": ["x1", "x2", "x1"],
        "duplicates": ["x1"],  # the repeat within the request is still known
        "duplicates_checked": False,
    }


async def test_stored_post_ids_answers_which_of_them_the_store_holds(database) -> None:
    _, session_factory = database
    posts = [
        Post(post_id=f"s{i}", source="a", content="x", created_at=utcnow() - timedelta(hours=1))
        for i in range(3)
    ]
    await _store(session_factory, posts)
    asked = ["s0", "nope", "s2", "s0"] + [f"other{i}" for i in range(1_000)]
    async with session_factory() as session:
        assert await store.stored_post_ids(session, asked) == {"s0", "s2"}
        assert await store.stored_post_ids(session, []) == set()
