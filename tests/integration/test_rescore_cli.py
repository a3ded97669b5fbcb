"""`sentiment-platform rescore` as a user runs it: its options and errors, and a real process
killed with SIGKILL in the middle of a run, then run again to the end — on the embedded
SQLite file and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from sentiment_platform import config
from sentiment_platform.cli import app as cli
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import utcnow
from tests.support.databases import scratch_store
from tests.support.pipeline import KeywordAnalyzer, wait_until
from tests.support.rescoring import (
    LengthAnalyzer,
    assert_counts_match_the_posts,
    make_posts,
    save_analysed,
)

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("sentiment-platform")
B = LengthAnalyzer.model
POSTS = 60


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stored(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, async_sessionmaker[AsyncSession]]]:
    """A store (its URL and sessions) of 60 posts analysed by the keyword rule."""
    async with scratch_store(request.param, tmp_path, "rescore_cli") as url:
        engine = create_engine(Settings(database_url=url))
        await upgrade_schema(engine)
        sessions = create_session_factory(engine)
        now = utcnow()
        await save_analysed(
            sessions, make_posts(POSTS, now - timedelta(days=4)), KeywordAnalyzer(), now
        )
        yield url, sessions
        await engine.dispose()


def _invoke(url: str, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("REDIS_HOST", raising=False)
    config.get_settings.cache_clear()
    try:
        return CliRunner().invoke(cli, ["rescore", *args])
    finally:
        config.get_settings.cache_clear()


async def _done(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        found = await session.scalar(
            text("SELECT count(*) FROM social_media_posts WHERE model = :m"), {"m": B}
        )
    return int(found or 0)


async def test_the_command_rescores_its_scope_and_refuses_bad_options(stored, monkeypatch):
    url, sessions = stored
    analyzer = "tests.support.rescoring:LengthAnalyzer"
    wrong = await asyncio.to_thread(
        _invoke, url, monkeypatch, "--analyzer", analyzer, "--model", "some-other"
    )
    assert wrong.exit_code == 2
    assert "'some-other' is not the model this process loads" in wrong.output
    backwards = await asyncio.to_thread(
        _invoke, url, monkeypatch, "--since", "2026-02-01", "--until", "2026-01-01"
    )
    assert backwards.exit_code == 2 and "--until" in backwards.output

    ran = await asyncio.to_thread(
        _invoke, url, monkeypatch, "--analyzer", analyzer, "--model", B, "--source", "twitter"
    )
    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report == {
        "model": B,
        "posts": 30,
        "meanwhile": 0,
        "failed": 0,
        "other_model": 0,
        "unreadable": 0,
        "batches": 1,
    }
    assert await _done(sessions) == 30
    await assert_counts_match_the_posts(sessions)


async def test_a_killed_process_is_continued_by_the_next_run(stored) -> None:
    url, sessions = stored
    env = os.environ | {
        "DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join((str(REPO / "src"), str(REPO))),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_HOST", None)
    command = [
        str(CLI),
        "rescore",
        "--analyzer",
        "tests.support.rescoring:SlowLengthAnalyzer",
        "--batch-size",
        "5",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        await wait_until(lambda: _reached(sessions, 10), 60, "two batches rescored")
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    done = await _done(sessions)
    assert 10 <= done < POSTS
    await assert_counts_match_the_posts(sessions)

    again = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(again.communicate(), 120)
    assert again.returncode == 0, err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1])["posts"] == POSTS - done
    assert await _done(sessions) == POSTS
    await assert_counts_match_the_posts(sessions)


async def _reached(sessions: async_sessionmaker[AsyncSession], count: int) -> bool:
    return await _done(sessions) >= count


async def test_without_an_analyzer_it_rescores_with_the_configured_model(stored, monkeypatch):
    """The embedded model (ANALYZER_BACKENDS=embedded): the target is the name its labels
    carry, and a second run finds nothing left."""
    url, sessions = stored
    monkeypatch.setenv("ANALYZER_BACKENDS", "embedded")
    monkeypatch.delenv("LLM_ESCALATE_BELOW", raising=False)
    first = await asyncio.to_thread(_invoke, url, monkeypatch, "--until", "2100-01-01")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout.strip().splitlines()[-1])
    assert report["model"].startswith("embedded/") and report["posts"] == POSTS
    async with sessions() as session:
        models = await session.scalars(text("SELECT DISTINCT model FROM social_media_posts"))
        assert list(models) == [report["model"]]
    await assert_counts_match_the_posts(sessions)
    again = await asyncio.to_thread(_invoke, url, monkeypatch, "--model", report["model"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["posts"] == 0
    unknown = await asyncio.to_thread(_invoke, url, monkeypatch, "--model", "no-such-model")
    assert unknown.exit_code == 2 and "no-such-model" in unknown.output
