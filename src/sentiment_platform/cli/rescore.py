"""`sentiment-platform rescore`: stored posts re-analysed by a model, with a progress bar.

The work is `services.analysis.rescore`; this module only loads the model (`open_model`,
the one place that decides which analyzer a rescore uses and what its labels are called),
draws the progress and reports. Run it again after a kill: it continues.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer

from sentiment_platform.cli.store import _configure_logging, _run_store
from sentiment_platform.config import Settings, get_settings
from sentiment_platform.domain import as_utc
from sentiment_platform.errors import PlatformError
from sentiment_platform.services.analysis.backends import Analyzer


async def open_model(
    name: str | None, analyzer: str | None, settings: Settings, session_factory: Any
) -> tuple[Analyzer, str]:
    """The analyzer a rescore labels with, and the model name its labels carry.

    By default the registry's: the models active for every language, or with `--model NAME`
    that model for the task(s) it serves (the other task keeps its active model), loaded as
    a worker loads them. `--analyzer module:Factory` names another analyzer instead (tests,
    benchmarks): its name is what it answers for a harmless text, and `--model` must match
    it."""
    if analyzer is not None:
        return await _other_analyzer(name, analyzer, settings)
    from sentiment_platform.services.analysis import registry
    from sentiment_platform.services.analysis.registry_backend import load_registry_backend
    from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer

    async with session_factory() as session, session.begin():
        await registry.ensure_embedded(session)
        choices = await registry.serving_choice(session, name)
    backend = await asyncio.to_thread(load_registry_backend, settings)
    try:
        models = await asyncio.to_thread(backend.load, {registry.ANY_LANGUAGE: choices})
    except BaseException:
        await asyncio.to_thread(backend.close)
        raise
    backend.swap(models)
    return SentimentAnalyzer([backend], None, settings.unsupported_languages), models.name


async def _other_analyzer(name: str | None, spec: str, settings: Settings) -> tuple[Analyzer, str]:
    from sentiment_platform.runtime import load_analyzer
    from sentiment_platform.services.analysis.rescore import answering_model

    loaded = await load_analyzer(spec, settings)
    chain = getattr(loaded, "backend_names", None)
    answers_as = chain[0] if chain else await answering_model(loaded)
    if name is not None and name != answers_as:
        _close(loaded)
        raise ValueError(
            f"--model {name!r} is not the model this process loads (it labels as {answers_as!r})"
        )
    return loaded, answers_as


def _close(analyzer: Analyzer) -> None:
    close = getattr(analyzer, "close", None)
    if callable(close):
        close()


def rescore(
    since: Annotated[datetime | None, typer.Option(help="posts created at or after (UTC)")] = None,
    until: Annotated[datetime | None, typer.Option(help="posts created before (UTC)")] = None,
    source: Annotated[str | None, typer.Option(help="only this source's posts")] = None,
    model: Annotated[
        str | None, typer.Option(help="the model to label with (default: the active one)")
    ] = None,
    analyzer: Annotated[
        str | None, typer.Option(help="module:Factory of another analyzer; default the model")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=5_000, help="posts per batch (one transaction each)")
    ] = 500,
) -> None:
    """Re-analyse stored posts with a model, correcting the rollups and the alert rules'
    counts in the same transactions. Live traffic goes on meanwhile; after a kill, the same
    command continues where it stopped (posts already labelled by the model are skipped)."""
    from rich.console import Console
    from rich.progress import Progress

    from sentiment_platform.services.analysis import rescore as service
    from sentiment_platform.store import Scope

    scope = Scope(
        since=as_utc(since) if since else None,
        until=as_utc(until) if until else None,
        source=source,
    )
    if scope.since and scope.until and scope.since >= scope.until:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    settings = get_settings()
    _configure_logging(settings)

    async def work(session_factory: Any) -> dict[str, Any]:
        try:
            labeller, name = await open_model(model, analyzer, settings, session_factory)
        except (RuntimeError, ValueError, PlatformError) as error:
            typer.echo(f"rescore cannot start: {error}", err=True)
            raise typer.Exit(2) from None
        try:
            todo = await service.remaining(session_factory, name, scope)
            with Progress(console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task(f"rescore with {name}", total=todo)
                done = await service.rescore(
                    session_factory,
                    labeller,
                    name,
                    scope,
                    batch_size=batch_size,
                    on_batch=lambda n: progress.advance(task, n),
                )
        except service.AnalyzerDown as error:
            typer.echo(f"rescore stopped: {error}; run it again to continue", err=True)
            raise typer.Exit(1) from None
        finally:
            await asyncio.to_thread(_close, labeller)
        return {"model": name, **asdict(done)}

    report = _run_store(settings, work)
    typer.echo(json.dumps(report))
    if report["other_model"] or report["failed"]:
        typer.echo(
            f"{report['other_model']} posts were labelled by another model (a fallback) and "
            f"{report['failed']} refused: run the command again to retry them",
            err=True,
        )
    if report["unreadable"]:
        typer.echo(
            f"{report['unreadable']} posts are in languages the model is not registered for: "
            "left as they were",
            err=True,
        )
