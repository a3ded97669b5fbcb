"""Real `sentiment-platform worker` processes: SIGKILL mid-batch loses nothing (the janitor
claims the orphans), SIGTERM finishes the batch in hand and exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from tests.support.pipeline import (
    MARKER_ENV,
    KeywordAnalyzer,
    batches_started,
    counts,
    make_posts,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("sentiment-platform")
SLOW = "tests.support.pipeline:SlowKeywordAnalyzer"

Sessions = async_sessionmaker[AsyncSession]


def start_worker(settings: Settings, name: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A worker process with the slow analyzer, noting its batches in tmp_path/<name>.batches."""
    env = (
        os.environ
        | settings.environment()
        | {
            MARKER_ENV: str(tmp_path / f"{name}.batches"),
            "WORKER_BATCH_SIZE": "50",
            "WORKER_BLOCK_MS": "100",
            "PYTHONPATH": str(REPO),
        }
    )
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [str(CLI), "worker", "--name", name, "--analyzer", SLOW],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def pending_of(settings: Settings, consumer: str) -> int:
    client = redis_client(settings)
    try:
        rows = await client.xpending_range(
            settings.redis_stream_name,
            settings.redis_consumer_group,
            "-",
            "+",
            10_000,
            consumername=consumer,
        )
    finally:
        await client.aclose()
    return len(rows)


async def in_second_batch(tmp_path: Path, name: str) -> None:
    """Wait until the worker has stored its first batch and is analysing its second."""

    async def started_two() -> bool:
        return await batches_started(tmp_path / f"{name}.batches") >= 2

    await wait_until(started_two, 30, f"{name} to start its second batch")


async def stored_at_least(sessions: Sessions, count: int, timeout_s: float) -> None:
    async def enough() -> bool:
        return (await counts(sessions))[1] >= count

    await wait_until(enough, timeout_s, f"{count} posts stored")


async def test_sigkill_mid_batch_loses_nothing_once_the_janitor_claims(
    pg_sessions: Sessions, redis_settings: Settings, tmp_path: Path
) -> None:
    settings = redis_settings
    bus = RedisStreamBus.from_settings(settings, redis_client(settings))
    await bus.publish(make_posts(600, "b"))
    doomed = start_worker(settings, "doomed", tmp_path)
    try:
        await in_second_batch(tmp_path, "doomed")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    orphaned = await pending_of(settings, "doomed")
    assert orphaned > 0, "killed in the middle of a batch: its entries are pending"

    config = WorkerConfig(batch_size=50, block_ms=100, claim_idle_ms=500)
    survivor = Worker(bus, MemoryEvents(), pg_sessions, KeywordAnalyzer(), "survivor", config)
    stop = asyncio.Event()
    task = asyncio.create_task(survivor.run(stop))

    async def orphans_settled() -> bool:
        # The doomed batch may have been stored but not acked: the claim then acks it.
        return await pending_of(settings, "doomed") == 0

    try:
        await stored_at_least(pg_sessions, 600, 30)
        await wait_until(orphans_settled, 15, "the janitor to claim the orphaned entries")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await counts(pg_sessions) == (600, 600)
    assert await pending_of(settings, "survivor") == 0


async def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(
    pg_sessions: Sessions, redis_settings: Settings, tmp_path: Path
) -> None:
    settings = redis_settings
    bus = RedisStreamBus.from_settings(settings, redis_client(settings))
    await bus.publish(make_posts(400, "t"))
    worker = start_worker(settings, "polite", tmp_path)
    try:
        await in_second_batch(tmp_path, "polite")
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.wait, 10)
    finally:
        if worker.poll() is None:
            worker.kill()
    log = (tmp_path / "polite.log").read_text()
    assert code == 0, log
    assert "event=worker.stop consumer=polite" in log
    assert await pending_of(settings, "polite") == 0  # finished and acked, nothing left held
    posts, analyses = await counts(pg_sessions)
    assert posts == analyses and posts % 50 == 0 and posts < 400
