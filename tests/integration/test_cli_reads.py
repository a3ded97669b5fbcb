"""The read side's commands: bench load (rollups included), rollups rebuild and export on
the embedded SQLite file and on PostgreSQL (COPY); serve --workers refusing the embedded
default."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from sentiment_platform import config
from sentiment_platform.cli import app as cli
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.models.database import PostRollup, SocialMediaPost
from tests.support.databases import recreate_postgres_database, scratch_database_url
from tests.support.languages import seed_languages


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("REDIS_HOST", raising=False)
    config.get_settings.cache_clear()
    yield url
    config.get_settings.cache_clear()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(
    request: pytest.FixtureRequest, sqlite_env: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_env
        return
    url = scratch_database_url("cli")
    asyncio.run(recreate_postgres_database(url))
    monkeypatch.setenv("DATABASE_URL", url)
    config.get_settings.cache_clear()
    yield url
    asyncio.run(recreate_postgres_database(url, create=False))


def _counts(url: str) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        engine = create_engine(Settings(database_url=url))
        try:
            async with create_session_factory(engine)() as session:
                posts = await session.scalar(select(func.count()).select_from(SocialMediaPost))
                counted = await session.scalar(
                    select(func.sum(PostRollup.count)).where(PostRollup.grain == "h")
                )
                return int(posts or 0), int(counted or 0)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_bench_load_rebuild_and_export(store_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    loaded = runner.invoke(cli, ["bench", "load", "--posts", "3000", "--days", "2", "--seed", "7"])
    assert loaded.exit_code == 0, loaded.output
    report = json.loads(loaded.output.strip().splitlines()[-1])
    assert report["posts"] == 3000 and report["rows_per_s"] > 0
    assert _counts(store_env) == (3000, 3000)  # the rollups are up to date

    rebuilt = runner.invoke(cli, ["rollups", "rebuild", "--since", "2000-01-01"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert _counts(store_env) == (3000, 3000)

    out = tmp_path / "negative.jsonl"
    exported = runner.invoke(
        cli, ["export", "--format", "jsonl", "--sentiment", "negative", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {row["sentiment"] for row in rows} == {"negative"}
    # each post carries its analysis
    assert {(row["confidence"], row["model"]) for row in rows} == {(0.9, "bench/synthetic")}
    assert f"exported {len(rows)} posts" in exported.output
    created = [row["created_at"] for row in rows]
    assert created == sorted(created, reverse=True)


def test_export_by_language(sqlite_env: str, tmp_path: Path) -> None:
    """`export --language` (issue 31): one language's posts, with their language, copy mark
    and analysis state; a bad code is refused naming `--language`."""

    async def seed() -> None:
        engine = create_engine(Settings(database_url=sqlite_env))
        try:
            await upgrade_schema(engine)
            await seed_languages(create_session_factory(engine))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    runner = CliRunner()
    out = tmp_path / "german.csv"
    exported = runner.invoke(cli, ["export", "--language", "DE", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 100 and "exported 100 posts" in exported.output
    assert {(row["language"], row["analysis"], row["sentiment"]) for row in rows} == {
        ("de", "unsupported_language", "")
    }
    refused = runner.invoke(cli, ["export", "--language", "german"])
    assert refused.exit_code == 2 and "--language" in refused.output


def test_serve_workers_refuses_the_embedded_default(sqlite_env: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "REDIS_HOST" in result.output and "one process" in result.output


def test_demo_history_loads_a_day_into_an_empty_store_once(sqlite_env: str) -> None:
    """`serve --demo` opens on a day of history: loaded when the store holds no posts, and
    not again over what a first start wrote."""
    from sentiment_platform.cli.store import preload_history

    settings = config.get_settings()
    assert preload_history(settings, 400) == 400
    assert _counts(sqlite_env) == (400, 400)
    assert preload_history(settings, 400) == 0
    assert _counts(sqlite_env) == (400, 400)
