"""The producers: file replay keeps good rows and reports bad ones by line; the demo
generator varies its texts and honours the negative ratio."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from sentiment_platform.api.deps import parts_of
from sentiment_platform.bus import decode_post
from sentiment_platform.bus.memory import MemoryBus
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.domain import MAX_CONTENT_CHARS, Post
from sentiment_platform.main import create_app
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.pipeline.demo import DemoGenerator, run_demo
from sentiment_platform.pipeline.ingester import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BAD_KEPT,
    ApiPublisher,
    ingest_file,
    read_rows,
)
from tests.support.pipeline import counts, wait_until


async def _published(bus: MemoryBus) -> list[str]:
    return [decode_post(e.fields).content for e in await bus.read("t", 10_000, 10)]


async def test_jsonl_replay_sends_good_rows_and_reports_bad_ones_by_line(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    lines = [
        json.dumps({"source": "twitter", "content": "first"}),
        "{broken",
        json.dumps({"source": "news", "content": ""}),
        "",
        json.dumps({"content": "no source"}),
        json.dumps({"source": "reviews", "content": "x" * (MAX_CONTENT_CHARS + 1)}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"source": "reddit", "content": "last", "author": "someone"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    bus = MemoryBus()
    seen: list[int] = []
    report = await ingest_file(path, bus, progress=seen.append, batch_size=1)
    assert report.sent == 2
    assert await _published(bus) == ["first", "last"]
    bad = dict(report.bad)
    assert sorted(bad) == [2, 3, 5, 6, 7]
    assert "not valid JSON" in bad[2]
    assert bad[3].startswith("content:") and "empty" in bad[3]
    assert bad[5].startswith("source:")
    assert bad[6].startswith("content:") and "10000" in bad[6]
    assert seen[-1] == 8


async def test_csv_replay_handles_quoted_newlines_and_fills_a_default_source(
    tmp_path: Path,
) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "source,content,author,created_at\n"
        'twitter,"great, really",a,2026-01-02T03:04:05Z\n'
        "news,,b,\n"
        ',"two\nlines",,\n'
        "forum,ok,c,,surplus\n"
    )
    bus = MemoryBus()
    report = await ingest_file(path, bus, default_source="import")
    assert report.sent == 2
    assert await _published(bus) == ["great, really", "two\nlines"]
    assert [line for line, _ in report.bad] == [3, 6]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
async def test_demo_posts_vary_and_follow_the_negative_ratio(ratio: float) -> None:
    posts = DemoGenerator(negative_ratio=ratio, seed=1).posts(2_000)
    assert len({post.content for post in posts}) > 1_000
    assert {post.source for post in posts} == {"twitter", "reddit", "news", "reviews", "forum"}
    negative_words = (
        "broken",
        "furious",
        "delayed",
        "waste",
        "down for",
        "outage",
        "recalls",
        "probe",
        "charged me twice",
        "filthy",
        "lost my",
        "cancelled",
        "ignored",
        "hung up",
        "dies",
        "crashing",
        "overheats",
        "wrong",
        "queue",
        "wiped",
        "logged me out",
        "doubled the price",
    )
    share = sum(any(w in p.content for w in negative_words) for p in posts) / len(posts)
    assert abs(share - ratio) < 0.05


async def test_demo_run_publishes_the_count_in_batches() -> None:
    bus = MemoryBus()
    sent = await run_demo(bus, count=1_234, rate=None, negative_ratio=0.2)
    assert sent == 1_234
    assert len(await _published(bus)) == 1_234


@contextlib.asynccontextmanager
async def _running_api(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[str, FastAPI]]:
    """The app under uvicorn on this loop, on a fresh SQLite file: (its URL, the app)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        **{
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
            "embedded_worker": False,
            "api_port": port,
            "rate_limit_per_minute": 0,
        }
        | overrides
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await wait_until(started, 20, "the API to start")
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 20)


async def test_api_publisher_sends_through_a_running_api_with_its_key(tmp_path: Path) -> None:
    """How `ingest` reaches the embedded bus: POST /api/posts, 1000 a request, X-API-Key."""
    key = "pipeline-test-key-0123456789"
    async with _running_api(tmp_path, api_keys=key) as (url, app):
        posts = DemoGenerator(seed=3).posts(2_500)
        publisher = ApiPublisher(url, key)
        assert await publisher.publish(posts) == [post.post_id for post in posts]
        await publisher.aclose()
        bus = parts_of(app).runtime.bus
        assert isinstance(bus, MemoryBus)
        assert len(await bus.read("t", 10_000, 10)) == 2_500

        refused = ApiPublisher(url, "a-wrong-key-0123456789")
        with pytest.raises(RuntimeError, match="refused posts \\(401\\)"):
            await refused.publish(posts[:1])
        await refused.aclose()


def _big_posts(path: Path, count: int, size: int = 8_000) -> list[str]:
    """A JSONL file of `count` posts of about `size` bytes each; their post ids."""
    ids = [f"big-{n:04d}" for n in range(count)]
    with path.open("w") as lines:
        for n, post_id in enumerate(ids):
            content = f"post {n}: " + "the Kestrel 14 laptop works flawlessly. " * (size // 40)
            lines.write(json.dumps({"post_id": post_id, "source": "forum", "content": content}))
            lines.write("\n")
    return ids


async def test_a_file_of_large_posts_through_the_api_loses_nothing(tmp_path: Path) -> None:
    """300 posts of ~8 KB are 2.4 MB, over the default 2 MiB MAX_BODY_BYTES in one request:
    the publisher sizes its requests under the limit, and every post is analysed and stored."""
    ids = _big_posts(tmp_path / "big.jsonl", 300)
    async with _running_api(tmp_path, embedded_worker=True, analyzer_backends=["embedded"]) as (
        url,
        app,
    ):
        publisher = ApiPublisher(url)
        assert publisher.body_budget < DEFAULT_MAX_BODY_BYTES
        report = await ingest_file(tmp_path / "big.jsonl", publisher)
        await publisher.aclose()
        assert (report.sent, report.bad_count, report.bad) == (300, 0, [])

        async def all_stored() -> bool:
            return (await counts(parts_of(app).runtime.session_factory)) == (300, 300)

        await wait_until(all_stored, 120, "the 300 posts to be analysed and stored")
        async with parts_of(app).runtime.session_factory() as session:
            stored = await session.scalars(select(SocialMediaPost.post_id))
            assert sorted(stored) == ids


async def test_a_request_the_api_finds_too_large_is_halved_until_it_fits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A publisher that believes the limit is 2 MiB, an API that says 64 KiB: 413s, halved
    requests, and still every post, in order."""
    caplog.set_level(logging.INFO, "sentiment_platform.pipeline.ingester")
    ids = _big_posts(tmp_path / "big.jsonl", 40)
    posts = [post for _, post in read_rows(tmp_path / "big.jsonl") if isinstance(post, Post)]
    async with _running_api(tmp_path, max_body_bytes=64 * 1024) as (url, app):
        publisher = ApiPublisher(url, max_body_bytes=2 * 1024 * 1024)
        assert await publisher.publish(posts) == ids
        bus = parts_of(app).runtime.bus
        assert isinstance(bus, MemoryBus)
        assert [decode_post(e.fields).post_id for e in await bus.read("t", 100, 10)] == ids
        halved = [r for r in caplog.records if getattr(r, "event", "") == "ingest.batch_halved"]
        assert [record.__dict__["posts"] for record in halved][:2] == [40, 20]

        await publisher.aclose()


async def test_a_single_post_over_the_api_limit_is_a_clear_error(tmp_path: Path) -> None:
    async with _running_api(tmp_path, max_body_bytes=4 * 1024) as (url, app):
        publisher = ApiPublisher(url)  # believes the default 2 MiB
        with pytest.raises(RuntimeError, match="refused posts \\(413\\)"):
            await publisher.publish([Post(source="x", content="y" * 9_000)])
        await publisher.aclose()
        assert (await parts_of(app).runtime.bus.stats()).length == 0


async def test_a_file_with_250_bad_rows_counts_them_all_and_keeps_the_first_100(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mixed.jsonl"
    with path.open("w") as lines:
        for n in range(300):
            good = n % 6 == 5  # 50 good rows, 250 bad ones
            row = {"source": "forum", "content": f"row {n}" if good else ""}
            lines.write(json.dumps(row) + "\n")
    bus = MemoryBus()
    report = await ingest_file(path, bus)
    assert report.sent == 50
    assert report.bad_count == 250
    assert len(report.bad) == MAX_BAD_KEPT == 100
    bad_lines = [n + 1 for n in range(300) if n % 6 != 5]
    assert [line for line, _ in report.bad] == bad_lines[:100]
    assert all(why.startswith("content:") for _, why in report.bad)
