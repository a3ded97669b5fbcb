"""The producers: file replay keeps good rows and reports bad ones by line; the demo
generator varies its texts and honours the negative ratio."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from sentiment_platform.bus import MemoryBus, decode_post
from sentiment_platform.domain import MAX_CONTENT_CHARS
from sentiment_platform.pipeline.demo import DemoGenerator, run_demo
from sentiment_platform.pipeline.ingester import ingest_file


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


async def test_api_publisher_sends_through_a_running_api_with_its_key(tmp_path: Path) -> None:
    """How `ingest` reaches the embedded bus: POST /api/posts, 1000 a request, X-API-Key."""
    import uvicorn

    from sentiment_platform.config import Settings
    from sentiment_platform.db import create_engine, upgrade_schema
    from sentiment_platform.main import create_app, parts_of
    from sentiment_platform.pipeline.ingester import ApiPublisher
    from tests.integration.pipeline_support import wait_until

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "pipeline-test-key-0123456789"
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        embedded_worker=False,
        api_keys=key,
        api_port=port,
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
        posts = DemoGenerator(seed=3).posts(2_500)
        publisher = ApiPublisher(f"http://127.0.0.1:{port}", key)
        assert await publisher.publish(posts) == [post.post_id for post in posts]
        await publisher.aclose()
        bus = parts_of(app).runtime.bus
        assert isinstance(bus, MemoryBus)
        assert len(await bus.read("t", 10_000, 10)) == 2_500

        refused = ApiPublisher(f"http://127.0.0.1:{port}", "a-wrong-key-0123456789")
        with pytest.raises(RuntimeError, match="refused posts \\(401\\)"):
            await refused.publish(posts[:1])
        await refused.aclose()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 20)
