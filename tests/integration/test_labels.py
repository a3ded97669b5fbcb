"""Labels (issue 30): `PUT|DELETE /api/posts/{post_id}/label`, the label on post items and
export rows, retention keeping labelled posts, and posts that come in labelled; on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr

from sentiment_platform import store
from sentiment_platform.bus import decode_post, encode_post
from sentiment_platform.domain import Analysis, Emotion, Post, PostLabel, Sentiment, utcnow
from sentiment_platform.services.retention import purge_once
from tests.support.app_client import app_client
from tests.support.seed import seed

pytestmark = pytest.mark.asyncio

KEY = "labels-test-key-0123456789"


def _items_by_id(answer: dict) -> dict[str, dict]:
    return {item["post_id"]: item for item in answer["items"]}


async def test_a_label_is_stored_shown_on_the_post_and_the_last_write_wins(api, database) -> None:
    await seed(database[1])
    first = await api.put(
        "/api/posts/p0307/label", json={"sentiment": "negative", "emotion": "anger"}
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["sentiment"] == "negative" and body["emotion"] == "anger"
    first_at = datetime.fromisoformat(body["labelled_at"])
    assert abs(first_at - utcnow()) < timedelta(minutes=1)

    second = await api.put("/api/posts/p0307/label", json={"sentiment": "Positive"})
    assert second.status_code == 200
    assert second.json()["sentiment"] == "positive" and second.json()["emotion"] is None
    assert datetime.fromisoformat(second.json()["labelled_at"]) >= first_at

    page = (await api.get("/api/posts", params={"limit": 100})).json()
    items = _items_by_id(page)
    assert items["p0307"]["label"] == second.json()  # the last write, as the PUT answered it
    assert all(item["label"] is None for post_id, item in items.items() if post_id != "p0307")
    assert items["p0307"]["sentiment"] is not None  # the model's label is untouched


async def test_delete_removes_the_label_and_unknown_posts_are_404(api, database) -> None:
    await seed(database[1])
    assert (
        await api.put("/api/posts/p0303/label", json={"sentiment": "neutral"})
    ).status_code == 200
    assert (await api.delete("/api/posts/p0303/label")).status_code == 204
    again = await api.delete("/api/posts/p0303/label")
    assert again.status_code == 204  # nothing to remove: still done
    page = (await api.get("/api/posts", params={"limit": 100})).json()
    assert _items_by_id(page)["p0303"]["label"] is None
    for method in ("put", "delete"):
        kwargs = {"json": {"sentiment": "neutral"}} if method == "put" else {}
        missing = await getattr(api, method)("/api/posts/no-such-post/label", **kwargs)
        assert missing.status_code == 404, method
        assert "no-such-post" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sentiment": "angry"}, "sentiment"),
        ({"sentiment": "negative", "emotion": "love"}, "emotion"),
        ({"emotion": "joy"}, "sentiment"),
        ({"sentiment": "negative", "reason": "sarcasm"}, "reason"),
        ({"sentiment": 3}, "sentiment"),
    ],
)
async def test_a_bad_label_is_a_422_naming_the_field(api, database, body, field) -> None:
    await seed(database[1])
    answer = await api.put("/api/posts/p0001/label", json=body)
    assert answer.status_code == 422, answer.text
    assert [problem["loc"] for problem in answer.json()["detail"]] == [["body", field]]


async def test_label_writes_need_the_api_key_when_keys_are_set(database) -> None:
    settings, sessions = database
    await seed(sessions)
    keyed = settings.model_copy(update={"api_keys": [SecretStr(KEY)]})
    async with app_client(keyed, sessions) as (_, client):
        body = {"sentiment": "negative"}
        assert (await client.put("/api/posts/p0001/label", json=body)).status_code == 401
        assert (await client.delete("/api/posts/p0001/label")).status_code == 401
        assert (await client.post("/api/review/p0001/skip")).status_code == 401
        wrong = {"X-API-Key": "not-the-key-0123456789"}
        assert (
            await client.put("/api/posts/p0001/label", json=body, headers=wrong)
        ).status_code == 401
        good = {"X-API-Key": KEY}
        assert (
            await client.put("/api/posts/p0001/label", json=body, headers=good)
        ).status_code == 200
        assert (await client.delete("/api/posts/p0001/label", headers=good)).status_code == 204
        assert (await client.get("/api/review")).status_code == 200  # a read: no key needed


async def test_export_rows_carry_the_label(api, database) -> None:
    await seed(database[1])
    await api.put("/api/posts/p0010/label", json={"sentiment": "negative", "emotion": "fear"})
    labelled_at = (await api.put("/api/posts/p0011/label", json={"sentiment": "neutral"})).json()[
        "labelled_at"
    ]
    jsonl = await api.get("/api/posts/export", params={"format": "jsonl", "source": "reddit"})
    rows = {row["post_id"]: row for row in map(json.loads, jsonl.text.splitlines())}
    assert rows["p0010"]["label"]["sentiment"] == "negative"
    assert rows["p0010"]["label"]["emotion"] == "fear"
    assert rows["p0013"]["label"] is None
    answer = await api.get("/api/posts/export", params={"format": "csv"})
    table = {row["post_id"]: row for row in csv.DictReader(io.StringIO(answer.text, newline=""))}
    assert table["p0010"]["label"] == "negative" and table["p0010"]["label_emotion"] == "fear"
    assert table["p0011"]["label"] == "neutral" and table["p0011"]["label_emotion"] == ""
    assert table["p0011"]["labelled_at"] == labelled_at
    assert table["p0012"]["label"] == table["p0012"]["labelled_at"] == ""


async def test_retention_never_deletes_a_labelled_post(api, database) -> None:
    settings, sessions = database
    await seed(sessions)  # two hours of posts in January 2026: all past any retention
    for post_id in ("p0000", "p0100", "p0365"):  # p0365: not analysed
        assert (
            await api.put(f"/api/posts/{post_id}/label", json={"sentiment": "positive"})
        ).status_code == 200
    purged = await purge_once(sessions, settings.model_copy(update={"retention_days": 1}))
    assert purged.posts == 367
    page = (await api.get("/api/posts", params={"limit": 100})).json()
    assert sorted(_items_by_id(page)) == ["p0000", "p0100", "p0365"]


async def test_a_post_that_comes_labelled_is_stored_with_its_label(api, database) -> None:
    _, sessions = database
    at = utcnow() - timedelta(minutes=5)
    posts = [
        Post(
            post_id="came-1",
            source="file",
            content="already judged",
            created_at=at,
            label="negative",
        ),
        Post(
            post_id="came-2",
            source="file",
            content="judged twice",
            created_at=at,
            label={"sentiment": "positive", "emotion": "joy"},
        ),
        Post(post_id="came-3", source="file", content="not judged", created_at=at),
    ]
    analysed_at = utcnow()
    analyses = [
        Analysis(p.post_id, Sentiment.NEUTRAL, 0.7, Emotion.NEUTRAL, 0.6, "m", analysed_at)
        for p in posts
    ]
    # as the worker gets it: through the bus's encoding
    decoded = [decode_post(encode_post(post)) for post in posts]
    assert decoded[1].label == PostLabel(sentiment=Sentiment.POSITIVE, emotion=Emotion.JOY)
    async with sessions() as session, session.begin():
        await store.save_batch(session, decoded, analyses)
    items = _items_by_id((await api.get("/api/posts", params={"source": "file"})).json())
    assert items["came-1"]["label"]["sentiment"] == "negative"
    assert items["came-1"]["label"]["emotion"] is None
    assert items["came-2"]["label"]["emotion"] == "joy"
    assert datetime.fromisoformat(items["came-2"]["label"]["labelled_at"]) == analysed_at
    assert items["came-3"]["label"] is None
    quality = (await api.get("/api/quality")).json()
    assert quality["labels"] == 2 and quality["random_labels"] == 0  # never drawn: not random


async def test_puts_that_arrive_together_are_written_together(api, database, monkeypatch) -> None:
    """Concurrent PUTs share statements (group commit, at most MAX_LABEL_WRITES posts each):
    every label lands, an unknown post is a 404 on its own, and of two PUTs on one post the
    one queued last (the latest `labelled_at`) is what is stored."""
    await seed(database[1])
    lots: list[int] = []
    set_labels = store.set_labels

    async def counted(connection, writes):
        lots.append(len(writes))
        return await set_labels(connection, writes)

    monkeypatch.setattr(store, "set_labels", counted)
    sentiments = ["negative", "neutral", "positive"]
    targets = [f"p{i:04d}" for i in range(0, 300, 3)] + ["p0003", "p0006", "nope-1", "nope-2"]
    answers = await asyncio.gather(
        *(
            api.put(f"/api/posts/{post_id}/label", json={"sentiment": sentiments[i % 3]})
            for i, post_id in enumerate(targets)
        )
    )
    assert [a.status_code for a in answers[-2:]] == [404, 404]
    assert all(a.status_code == 200 for a in answers[:-2]), [a.text for a in answers]
    assert sum(lots) == len(targets) and len(lots) < len(targets)  # some lots held several
    async with database[1]() as session:
        stored = await store.posts_by_ids(session, targets)
    page = {view.post_id: view.model_dump(mode="json") for view in stored}
    latest: dict[str, dict] = {}
    for post_id, answer in zip(targets, answers, strict=True):
        if answer.status_code == 200:
            body = answer.json()
            if post_id not in latest or body["labelled_at"] > latest[post_id]["labelled_at"]:
                latest[post_id] = body
    assert {post_id: page[post_id]["label"] for post_id in latest} == latest
