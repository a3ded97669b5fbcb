"""/ws end to end: a real uvicorn server, real WebSocket clients (the `websockets` library).

Embedded mode runs the server in a thread of this process (its own event loop), so the test
can publish on the same in-process events channel the worker uses. The Redis test runs two
API processes as subprocesses on PostgreSQL and Redis, each with its own uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sentiment_platform import store
from sentiment_platform.api.deps import parts_of
from sentiment_platform.bus import POST_ANALYZED, Event
from sentiment_platform.bus.redis import redis_client
from sentiment_platform.bus.redis_events import RedisEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, PostView, Sentiment, utcnow
from tests.support.counted import save_counted
from tests.support.databases import recreate_postgres_database, scratch_database_url
from tests.support.servers import ThreadedServer, free_socket

pytestmark = pytest.mark.asyncio

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings for an embedded server on a fresh, migrated SQLite file."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'live.db'}",
        alert_check_interval_s=0.2,
        cors_origins=["https://dash.example.com"],
        embedded_worker=False,
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    yield settings


def post_item(post_id: str, content: str = "a post", **fields: Any) -> dict[str, Any]:
    post = Post(post_id=post_id, source="test", content=content)
    analysis = Analysis(
        post_id=post_id,
        sentiment=Sentiment.POSITIVE,
        confidence=0.9,
        emotion=Emotion.JOY,
        emotion_confidence=0.8,
        model="test-fixture",
        analyzed_at=utcnow(),
    )
    return PostView.of(post, analysis).model_dump(mode="json") | fields


async def next_of(ws: ClientConnection, kind: str, within: float) -> dict[str, Any]:
    """The next message of one type, skipping the others, within `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            message = orjson.loads(await ws.recv())
            if message["type"] == kind:
                return message["data"]


async def store_analysed(settings: Settings, sentiment: Sentiment, count: int) -> None:
    """Posts created now with analyses we label ourselves, saved as the worker would."""
    engine = create_engine(settings)
    try:
        now = utcnow()
        tag = uuid.uuid4().hex[:8]
        posts = [
            Post(post_id=f"{tag}-{i}", source="test", content=f"{sentiment} {i}", created_at=now)
            for i in range(count)
        ]
        analyses = [
            Analysis(post.post_id, sentiment, 0.9, Emotion.NEUTRAL, 0.5, "test-fixture", now)
            for post in posts
        ]
        await save_counted(create_session_factory(engine), posts, analyses)
    finally:
        await engine.dispose()


async def test_metrics_then_posts_arrive(embedded: Settings) -> None:
    await store_analysed(embedded, Sentiment.NEUTRAL, 3)
    with ThreadedServer(embedded) as server:
        async with connect(server.url) as ws:
            metrics = await next_of(ws, "metrics", 2.5)
            assert metrics["total"] == 3
            assert metrics["sentiment"]["neutral"]["count"] == 3
            assert metrics["sentiment"]["neutral"]["percentage"] == 100.0
            assert len(metrics["emotion"]) == 6 and metrics["bucket"] == "minute"
            assert metrics["models"] == {"test-fixture": 3}  # the /api/metrics body, models too
            assert (metrics["unanalysed"], metrics["duplicates"], metrics["unique"]) == (
                0,
                0,
                False,
            )
            assert isinstance(metrics["by_language"], dict)  # issue 31's fields, every post's
            assert parts_of(server.app).hub.client_count == 1

            sent = time.monotonic()
            await server.publish(Event(POST_ANALYZED, post_item("live-1", "hello")))
            post = await next_of(ws, "post", 1.0)
            assert time.monotonic() - sent < 1.0
            assert post["post_id"] == "live-1" and post["content"] == "hello"
            assert post["sentiment"] == "positive" and post["model"] == "test-fixture"


async def test_batch_clients_get_posts_messages(embedded: Settings) -> None:
    with ThreadedServer(embedded) as server:
        async with connect(server.url + "?batch=1") as ws:
            await asyncio.sleep(0.1)  # let the hub register the client
            await server.publish(*(Event(POST_ANALYZED, post_item(f"b{i}")) for i in range(5)))
            received: list[str] = []
            while len(received) < 5:
                received += [item["post_id"] for item in await next_of(ws, "posts", 1.0)]
            assert received == [f"b{i}" for i in range(5)]


async def test_alert_fires_on_negative_burst_and_resolves(embedded: Settings) -> None:
    with ThreadedServer(embedded) as server:
        async with connect(server.url) as ws:
            await store_analysed(embedded, Sentiment.NEGATIVE, 10)
            with pytest.raises(TimeoutError):  # 10 < ALERT_MIN_POSTS: no verdict
                await next_of(ws, "alert", 0.6)

            await store_analysed(embedded, Sentiment.NEGATIVE, 20)
            fired = await next_of(ws, "alert", 2.0)
            assert fired["state"] == "firing" and fired["alert_type"] == "negative_spike"
            assert fired["severity"] == "critical"  # 100 % negative
            assert fired["details"]["total"] == 30 and fired["resolved_at"] is None

            await store_analysed(embedded, Sentiment.POSITIVE, 200)
            resolved = await next_of(ws, "alert", 2.0)
            assert resolved["id"] == fired["id"]  # one incident, one row
            assert resolved["state"] == "resolved" and resolved["resolved_at"] is not None

    engine = create_engine(embedded)
    async with create_session_factory(engine)() as session:
        alerts, total = await store.list_alerts(session, limit=10)
    await engine.dispose()
    assert total == 1 and alerts[0].state == "resolved"


async def test_origin_allow_list(embedded: Settings) -> None:
    with ThreadedServer(embedded) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url, origin="https://evil.example.net"):
                pass
        assert refused.value.response.status_code == 403
        for origin in (
            None,  # not a browser
            "https://dash.example.com",  # CORS_ORIGINS
            f"http://127.0.0.1:{server.port}",  # the server's own host
            "http://localhost:5173",  # loopback
        ):
            async with connect(server.url, origin=origin) as ws:  # type: ignore[arg-type]
                await ws.ping()


async def test_slow_client_is_dropped_without_delaying_a_fast_one(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}",
        ws_queue_size=64,
        ws_flush_ms=5,
        embedded_worker=False,
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    with ThreadedServer(settings) as server:
        # The slow client reads nothing: a tiny receive buffer, one frame of read-ahead.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        async with (
            connect(server.url, sock=sock, max_queue=1) as slow,
            connect(server.url) as fast,
        ):
            await asyncio.sleep(0.1)

            async def read_all(count: int) -> float:
                for _ in range(count):
                    await next_of(fast, "post", 2.0)
                return time.monotonic()

            count = 800
            reader = asyncio.create_task(read_all(count))
            content = "x" * 8_000
            for start in range(0, count, 20):
                batch = range(start, start + 20)
                await server.publish(
                    *(Event(POST_ANALYZED, post_item(f"f{i}", content)) for i in batch)
                )
                await asyncio.sleep(0.005)
            published = time.monotonic()
            assert await reader - published < 1.0  # the fast client kept up
            assert parts_of(server.app).hub.dropped_total == 1
            assert parts_of(server.app).hub.client_count == 1

            # The slow client's connection was aborted (reset), not closed: no close frame
            # could have reached it behind what it had not read.
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await slow.recv()
            assert closed.value.rcvd is None


async def test_a_hub_that_falls_behind_skips_old_posts_instead_of_dropping_clients(
    tmp_path: Path,
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'behind.db'}",
        ws_queue_size=5,
        embedded_worker=False,
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    with ThreadedServer(settings) as server:
        async with connect(server.url) as ws:
            await asyncio.sleep(0.1)
            # 20 posts in one flush: more than a per-post client may queue.
            await server.publish(*(Event(POST_ANALYZED, post_item(f"s{i}")) for i in range(20)))
            received = [(await next_of(ws, "post", 1.0))["post_id"] for _ in range(5)]
            assert received == [f"s{i}" for i in range(15, 20)]  # the newest five
            await server.publish(Event(POST_ANALYZED, post_item("after")))
            assert (await next_of(ws, "post", 1.0))["post_id"] == "after"  # still connected
            hub = parts_of(server.app).hub
            assert hub.skipped_posts_total == 15 and hub.dropped_total == 0


# --- two API processes on Redis --------------------------------------------------------


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], port: int | None = None) -> Iterator[None]:
    """A subprocess of this repo; with `port`, started once it accepts connections there."""
    process = subprocess.Popen(args, env=os.environ | env, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 20
        while port is not None:
            assert process.poll() is None, f"{args[2]} exited"
            assert time.monotonic() < deadline, f"{args[2]} did not start"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def api_process(env: dict[str, str]) -> Iterator[int]:
    """`uvicorn --factory sentiment_platform.main:create_app` on a free port; yields the port."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    args = [
        sys.executable, "-m", "uvicorn", "--factory", "sentiment_platform.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--ws-per-message-deflate", "false",
    ]  # fmt: skip
    with running(args, env, port):
        yield port


def worker_process(env: dict[str, str]) -> contextlib.AbstractContextManager[None]:
    """A real `sentiment-platform worker` with the pipeline tests' keyword analyzer."""
    cli = str(Path(sys.executable).parent / "sentiment-platform")
    analyzer = "tests.support.pipeline:KeywordAnalyzer"
    worker_env = env | {"PYTHONPATH": str(REPO_ROOT), "WORKER_BLOCK_MS": "100"}
    return running([cli, "worker", "--analyzer", analyzer], worker_env)


@pytest.mark.redis
@pytest.mark.postgres
async def test_two_api_processes_push_what_one_worker_analyses_and_one_alert() -> None:
    database_url = scratch_database_url("live")
    channel = f"test_events_{uuid.uuid4().hex}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        redis_host="127.0.0.1",
        events_channel=channel,
    )
    await recreate_postgres_database(database_url)
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_HOST": "127.0.0.1",
        "EVENTS_CHANNEL": channel,
        "REDIS_STREAM_NAME": f"test_stream_{uuid.uuid4().hex}",
        "ALERT_CHECK_INTERVAL_S": "0.2",
    }
    events = RedisEvents(redis_client(settings), channel)
    admin = redis_client(settings)
    try:
        with api_process(env) as port_a, api_process(env) as port_b, worker_process(env):
            async with (
                connect(f"ws://127.0.0.1:{port_a}/ws") as ws_a,
                connect(f"ws://127.0.0.1:{port_b}/ws") as ws_b,
            ):
                for _ in range(200):  # both hubs have subscribed
                    if (await admin.pubsub_numsub(channel))[0][1] == 2:
                        break
                    await asyncio.sleep(0.05)
                await events.publish(Event(POST_ANALYZED, post_item("redis-1", "from a worker")))
                for ws in (ws_a, ws_b):
                    assert (await next_of(ws, "post", 1.0))["post_id"] == "redis-1"

                # The whole path: POST to process A, the worker analyses and stores it,
                # both processes push it.
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}") as http:
                    body = {"post_id": "e2e-1", "source": "test", "content": "I love this"}
                    response = await http.post("/api/posts", json=body)
                    assert response.status_code == 202, response.text
                for ws in (ws_a, ws_b):
                    post = await next_of(ws, "post", 5.0)
                    received = utcnow()
                    assert post["post_id"] == "e2e-1" and post["sentiment"] == "positive"
                    assert post["model"] == "test-keyword-rule"
                    analysed = datetime.fromisoformat(post["analyzed_at"])
                    assert received - analysed < timedelta(seconds=1)

                # Both processes run a monitor; the lease lets one evaluate: one alert, once.
                await store_analysed(settings, Sentiment.NEGATIVE, 25)
                fired = [await next_of(ws, "alert", 3.0) for ws in (ws_a, ws_b)]
                assert fired[0] == fired[1] and fired[0]["state"] == "firing"
                for ws in (ws_a, ws_b):
                    with pytest.raises(TimeoutError):
                        await next_of(ws, "alert", 0.8)
        engine = create_engine(settings)
        async with create_session_factory(engine)() as session:
            _, total = await store.list_alerts(
                session, limit=10, since=utcnow() - timedelta(hours=1)
            )
        await engine.dispose()
        assert total == 1
    finally:
        await admin.aclose()
        await recreate_postgres_database(database_url, create=False)
