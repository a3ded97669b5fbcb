"""The commands that work on the store directly, registered by `cli`: `rollups rebuild`, `bench
load` and `export`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sentiment_platform.config import Settings, get_settings
from sentiment_platform.domain import as_utc

rollups_app = typer.Typer(no_args_is_help=True, help="The rollup counts the metrics read.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmark helpers.")
T = TypeVar("T")
BULK_TIMEOUT_MS = 3_600_000


def _configure_logging(settings: Settings) -> None:
    from sentiment_platform.telemetry import configure_logging

    configure_logging(settings)


def _run_store(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(session_factory)` on the configured store, the schema brought to head.

    Operators' bulk commands run for minutes at 10M posts: DB_STATEMENT_TIMEOUT_MS (the
    server's timeout and the driver's) is for requests, so it is an hour here.
    """
    from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema

    bulk = settings.model_copy(update={"db_statement_timeout_ms": BULK_TIMEOUT_MS})

    async def run() -> T:
        engine = create_engine(bulk)
        try:
            await upgrade_schema(engine)
            return await work(create_session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def init_db() -> None:
    """Create or upgrade the schema (Alembic migrations)."""
    settings = get_settings()
    _configure_logging(settings)
    _run_store(settings, _at_head)
    typer.echo(f"schema is at head on {settings.async_database_url.split('@')[-1]}")


async def _at_head(_session_factory: Any) -> None:
    """Nothing more to do: `_run_store` brought the schema to head (a backfill: minutes)."""


@rollups_app.command("rebuild")
def rollups_rebuild(
    since: Annotated[
        datetime | None, typer.Option(help="from the UTC day this falls in (default: all)")
    ] = None,
) -> None:
    """Recompute the rollups from the stored posts (after a manual import)."""
    from sentiment_platform.store import rollups

    settings = get_settings()
    _configure_logging(settings)

    async def work(session_factory: Any) -> int:
        async with session_factory() as session, session.begin():
            return await rollups.rebuild(session, as_utc(since) if since else None)

    typer.echo(f"rollups rebuilt: {_run_store(settings, work)} cells")


def preload_history(settings: Settings, posts: int) -> int:
    """`serve --demo`: a day of synthetic history when the store holds no posts yet (a
    second start keeps what the first wrote). Returns how many posts were loaded."""
    from sentiment_platform.cli.bench_load import load
    from sentiment_platform.store.posts import any_posts

    async def work(session_factory: Any) -> int:
        async with session_factory() as session:
            if await any_posts(session):
                return 0
        return (await load(session_factory, posts, days=1.0)).posts

    return _run_store(settings, work)


@bench_app.command("load")
def bench_load(
    posts: Annotated[int, typer.Option(min=1, help="how many analysed posts")] = 100_000,
    days: Annotated[float, typer.Option(min=0.001, help="spread over the last D days")] = 1.0,
    seed: Annotated[int, typer.Option(help="texts, times and labels follow the seed")] = 0,
) -> None:
    """Write synthetic analysed posts straight into the store, then bring the rollups up to
    date; prints rows/s (PostgreSQL: COPY)."""
    from rich.progress import Progress

    from sentiment_platform.cli.bench_load import Loaded, load

    settings = get_settings()
    _configure_logging(settings)

    async def work(session_factory: Any) -> Loaded:
        with Progress(transient=True) as progress:
            task = progress.add_task("posts", total=posts)
            return await load(
                session_factory, posts, days, seed, lambda n: progress.advance(task, n)
            )

    loaded = _run_store(settings, work)
    typer.echo(
        json.dumps(
            {
                "posts": loaded.posts,
                "rows": loaded.posts * 2,  # a post and its analysis
                "load_s": round(loaded.load_s, 2),
                "posts_per_s": round(loaded.posts_per_s),
                "rows_per_s": round(2 * loaded.posts_per_s),
                "rollups_s": round(loaded.rollups_s, 2),
                "store": settings.async_database_url.split("@")[-1],
            }
        )
    )


def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    out: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    since: Annotated[datetime | None, typer.Option(help="created at or after (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="created before (UTC)")] = None,
    source: Annotated[str | None, typer.Option()] = None,
    sentiment: Annotated[str | None, typer.Option()] = None,
    emotion: Annotated[str | None, typer.Option()] = None,
    q: Annotated[str | None, typer.Option(help="case-insensitive substring")] = None,
    language: Annotated[str | None, typer.Option(help="ISO 639-1 code or und")] = None,
) -> None:
    """Every matching post, newest first, as CSV or JSON Lines, with a progress bar (not
    capped by EXPORT_MAX_ROWS, which guards the HTTP endpoint)."""
    import sys

    from rich.console import Console
    from rich.progress import Progress

    from sentiment_platform.domain import Emotion, Sentiment
    from sentiment_platform.rule_spec import language_code
    from sentiment_platform.services.reporting.export import expected_rows, export_chunks
    from sentiment_platform.store import PostFilter

    if fmt not in ("csv", "jsonl"):
        raise typer.BadParameter("must be csv or jsonl", param_hint="--format")
    try:
        language = None if language is None else language_code(language)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--language") from None
    try:
        where = PostFilter(
            sentiment=Sentiment(sentiment) if sentiment else None,
            emotion=Emotion(emotion) if emotion else None,
            source=source,
            since=as_utc(since) if since else None,
            until=as_utc(until) if until else None,
            text=q,
            language=language,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    settings = get_settings()
    _configure_logging(settings)

    async def work(session_factory: Any) -> int:
        async with session_factory() as session:
            expected = await expected_rows(session, where)  # the CLI has no cap
        counted = [0]
        sink = out.open("wb") if out else sys.stdout.buffer
        try:
            with Progress(console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task("export", total=expected)
                async for chunk in export_chunks(session_factory, where, fmt, counted):  # type: ignore[arg-type]
                    sink.write(chunk)
                    progress.update(task, completed=counted[0])
        finally:
            if out:
                sink.close()
        return counted[0]

    typer.echo(f"exported {_run_store(settings, work)} posts", err=True)
