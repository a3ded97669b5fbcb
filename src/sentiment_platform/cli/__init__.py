"""`sentiment-platform`: serve · worker · ingest · init-db · train · evaluate · export ·
rollups · rescore · adapt · bench · model."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sentiment_platform.cli import adapt as cli_adapt
from sentiment_platform.cli import models as cli_models
from sentiment_platform.cli import rescore as cli_rescore
from sentiment_platform.cli import store as cli_store
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.domain import Task

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
ingest_app = typer.Typer(no_args_is_help=True, help="Put posts onto the bus.")
app.add_typer(ingest_app, name="ingest")
app.add_typer(cli_store.rollups_app, name="rollups")
app.add_typer(cli_store.bench_app, name="bench")
app.add_typer(cli_models.model_app, name="model")
app.command("init-db")(cli_store.init_db)
app.command("export")(cli_store.export)
app.command("rescore")(cli_rescore.rescore)
app.command("adapt")(cli_adapt.adapt)

TaskOption = Annotated[Task, typer.Option(help="what the model is asked")]
T = TypeVar("T")


def _configure_logging(settings: Settings) -> None:
    from sentiment_platform.telemetry import configure_logging

    configure_logging(settings)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: API_PORT")] = None,
    demo: Annotated[bool, typer.Option(help="also feed generated posts")] = False,
    history: Annotated[
        int,
        typer.Option(
            min=0,
            help="with --demo: synthetic posts over the last day, loaded first when the store "
            "holds no posts, so the dashboard opens on a day of history (0: none)",
        ),
    ] = 10_000,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes (Redis mode; uvicorn's app factory)")
    ] = 1,
) -> None:
    """Run the API (and, on the embedded default, the worker and the alert monitor)."""
    import uvicorn

    from sentiment_platform.api.security import proxy_options
    from sentiment_platform.api.websocket import UVICORN_WEBSOCKET_OPTIONS
    from sentiment_platform.main import create_app

    settings = get_settings()
    if workers > 1:
        _serve_processes(settings, workers, host, port)
        return
    updates: dict[str, object] = {"serve_demo": demo}
    if host:
        updates["api_host"] = host
    if port:
        updates["api_port"] = port
    settings = settings.model_copy(update=updates)
    _configure_logging(settings)
    if settings.is_sqlite:
        cli_store.init_db()
    if demo and history:
        loaded = cli_store.preload_history(settings, history)
        if loaded:
            typer.echo(f"loaded a day of history: {loaded} posts (bench load)")
    api = create_app(settings)
    _settle_garbage_collector()
    uvicorn.run(
        api,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's records go through our one logging setup
        **proxy_options(settings),
        **UVICORN_WEBSOCKET_OPTIONS,
    )


def _serve_processes(settings: Settings, workers: int, host: str | None, port: int | None) -> None:
    """N API processes on one port (uvicorn's supervisor), each building its app from the
    environment through the factory. Redis mode only: on the embedded default the bus, the
    worker and the alert monitor live inside the one `serve` process (an in-process bus
    cannot be shared), and the SQLite file takes one writer at a time."""
    import uvicorn

    from sentiment_platform.api.security import proxy_options
    from sentiment_platform.api.websocket import UVICORN_WEBSOCKET_OPTIONS

    if not settings.uses_redis:
        typer.echo(
            "serve --workers needs REDIS_HOST (and a PostgreSQL DATABASE_URL): on the embedded "
            "default the in-process bus, the worker and the alert monitor live inside one "
            "process and cannot be shared between several, so it stays one process",
            err=True,
        )
        raise typer.Exit(2)
    _configure_logging(settings)
    uvicorn.run(
        "sentiment_platform.cli:api_process_app",
        factory=True,
        workers=workers,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
        **proxy_options(settings),
        **UVICORN_WEBSOCKET_OPTIONS,
    )


def api_process_app() -> FastAPI:
    """One of `serve --workers N`'s processes. Each is spawned afresh, so it sets up what
    `serve` sets up in its one process: without this, their log lines lost their format
    and fields (Python's last-resort handler printed the bare message) and their collector
    kept CPython's thresholds."""
    from sentiment_platform.main import create_app

    settings = get_settings()
    _configure_logging(settings)
    api = create_app(settings)
    _settle_garbage_collector()
    return api


# Young collections every 10,000 net allocations instead of CPython's 700.
SERVE_GC_THRESHOLDS = (10_000, 20, 10)


def _settle_garbage_collector() -> None:
    """Keep the collector from pausing a busy server for hundreds of milliseconds.

    Every /ws client holds a few hundred objects. With CPython's default thresholds, full
    collections over all of them pause the event loop long enough to be the whole of the
    WebSocket p99 (benchmarks/ws.py). What start-up made is frozen out of every scan, and
    collections run less often.
    """
    gc.freeze()
    gc.set_threshold(*SERVE_GC_THRESHOLDS)


@app.command()
def worker(
    name: Annotated[
        str | None, typer.Option(help="stable consumer name (a restart resumes its entries)")
    ] = None,
    analyzer: Annotated[
        str | None, typer.Option(help="module:Factory of another analyzer; default the model")
    ] = None,
) -> None:
    """Run one stream worker (Redis mode); SIGTERM/SIGINT finish the batch in hand, then exit."""
    from sentiment_platform.pipeline.worker import run_worker
    from sentiment_platform.runtime import load_analyzer, open_runtime

    settings = get_settings()
    _configure_logging(settings)
    if not settings.uses_redis:
        typer.echo(
            "worker needs REDIS_HOST; on the embedded default `serve` runs the worker itself",
            err=True,
        )
        raise typer.Exit(2)
    if settings.worker_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.worker_metrics_port, addr=settings.api_host)

    async def run() -> None:
        try:
            model = await load_analyzer(analyzer, settings)
        except (RuntimeError, ValueError) as error:
            typer.echo(f"worker cannot start: {error}", err=True)
            raise typer.Exit(2) from None
        async with open_runtime(settings, model) as runtime:
            await run_worker(runtime, name)

    asyncio.run(run())


ApiUrl = Annotated[
    str | None,
    typer.Option(help="send through this API (default: the stream in Redis mode, else the API)"),
]


def _produce(run: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a producer; an unreachable bus or API is a one-line error, not a traceback."""
    from redis.exceptions import RedisError

    try:
        return asyncio.run(run())
    except (RedisError, OSError, RuntimeError) as error:
        typer.echo(f"ingest failed: {error}", err=True)
        raise typer.Exit(1) from None


@ingest_app.command("demo")
def ingest_demo(
    count: Annotated[int, typer.Option(min=1, help="how many posts")] = 100,
    rate: Annotated[
        float | None, typer.Option(min=0.1, help="posts per second (default: all at once)")
    ] = None,
    negative_ratio: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of negative posts (alerts)")
    ] = 0.2,
    api: ApiUrl = None,
) -> None:
    """Generated posts (twitter, reddit, news, reviews, forum) onto the bus."""
    from rich.progress import Progress

    from sentiment_platform.pipeline.demo import run_demo
    from sentiment_platform.pipeline.ingester import publisher_for

    settings = get_settings()
    _configure_logging(settings)

    async def run() -> int:
        async with publisher_for(settings, api) as publisher:
            with Progress() as progress:
                task = progress.add_task("demo posts", total=count)
                return await run_demo(
                    publisher,
                    count,
                    rate,
                    negative_ratio,
                    progress=lambda sent: progress.advance(task, sent),
                )

    typer.echo(f"published {_produce(run)} demo posts")


@ingest_app.command("file")
def ingest_file(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL, or .csv")],
    source: Annotated[str | None, typer.Option(help="source for rows without one")] = None,
    api: ApiUrl = None,
) -> None:
    """Replay posts from a JSONL or CSV file; bad rows are reported by line and skipped."""
    from rich.progress import Progress

    from sentiment_platform.pipeline.ingester import FileReport, ingest_file, publisher_for

    settings = get_settings()
    _configure_logging(settings)
    with path.open("rb") as handle:
        lines = sum(1 for _ in handle)

    async def run() -> FileReport:
        async with publisher_for(settings, api) as publisher:
            with Progress() as progress:
                task = progress.add_task(path.name, total=lines)
                return await ingest_file(
                    path,
                    publisher,
                    source,
                    progress=lambda line: progress.update(task, completed=line),
                )

    report = _produce(run)
    for line, why in report.bad:
        typer.echo(f"line {line}: {why}", err=True)
    if report.bad_count > len(report.bad):
        typer.echo(f"... and {report.bad_count - len(report.bad)} more bad rows", err=True)
    typer.echo(f"sent {report.sent} posts, skipped {report.bad_count} bad rows")


@app.command()
def train(
    task: TaskOption,
    data: Annotated[Path, typer.Option(exists=True, file_okay=False, help="training data dir")],
    out: Annotated[Path, typer.Option(help="where the trained model goes")],
    extra_data: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="sentiment only, repeatable: an emotion set (TweetEval emotion or "
            "GoEmotions-Ekman) whose train rows are added as sentiment rows",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="sentiment only: where torch trains, cpu or cuda (a GPU)")
    ] = "cpu",
) -> None:
    """Train the offline (embedded) model."""
    from sentiment_platform.training.train import SentimentConfig
    from sentiment_platform.training.train import train as run_training

    _configure_logging(get_settings())
    config = None
    if extra_data or device != "cpu":
        if task is not Task.SENTIMENT:
            raise typer.BadParameter("--extra-data and --device: use them with --task sentiment")
        extra = tuple(str(path) for path in extra_data or ())
        config = SentimentConfig(extra_data=extra, device=device)
    result = run_training(task, data, out, config)
    typer.echo(json.dumps(result))


@app.command()
def evaluate(
    task: TaskOption,
    data: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="CSV with text,label")],
    backend: Annotated[str | None, typer.Option(help="embedded, transformers or llm")] = None,
) -> None:
    """Score a backend on a labelled CSV; the last line printed is one JSON object."""
    from sentiment_platform.training.evaluate import evaluate as run_evaluation

    settings = get_settings()
    _configure_logging(settings)
    typer.echo(json.dumps(run_evaluation(task, data, backend, settings)))
