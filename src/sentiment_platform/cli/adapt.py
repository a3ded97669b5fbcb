"""`sentiment-platform adapt`: the active embedded model adapted to the stored labels, with a
progress bar, both models' cross-validated figures, and a new registry version
(`training/adapt.py` does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sentiment_platform.cli.store import _configure_logging, _run_store
from sentiment_platform.config import get_settings
from sentiment_platform.errors import PlatformError


def adapt(
    min_labels: Annotated[
        int, typer.Option(min=1, help="refuse with fewer labels than this in the store")
    ] = 200,
    activate: Annotated[
        bool, typer.Option(help="serve the new version if it beats the active model")
    ] = False,
    replay_data: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="base training tweets to replay (TweetEval sentiment's layout; default "
            "../shared/data/tweeteval/sentiment where it exists)",
        ),
    ] = None,
    replay_rows: Annotated[
        int, typer.Option(min=0, help="base training tweets replayed beside the labels")
    ] = 3_000,
) -> None:
    """Adapt the active embedded model to the stored labels (random and uncertain).

    Scores the candidate and the active model by 5-fold cross-validation on the random
    labels, registers the candidate as a new model version, and with --activate serves it
    only if its macro-recall is higher.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from sentiment_platform.training.adapt import AdaptRequest
    from sentiment_platform.training.adapt import adapt as run_adapt

    settings = get_settings()
    _configure_logging(settings)
    request = AdaptRequest(
        min_labels=min_labels, activate=activate, replay_data=replay_data, replay_rows=replay_rows
    )
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        stages: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in stages:
                stages[stage] = bar.add_task(stage, total=total)
            bar.update(stages[stage], completed=done, total=total)

        try:
            outcome = _run_store(
                settings, lambda sessions: run_adapt(sessions, settings, request, progress)
            )
        except PlatformError as error:
            bar.stop()
            typer.echo(f"adapt: {error.detail}", err=True)
            raise typer.Exit(1) from None
    for note in outcome.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"labels: {outcome.labels} ({outcome.random_labels} random)")
    for task in outcome.tasks:
        typer.echo(
            f"{task.task}: {request.folds}-fold cross-validation on the {task.random_labels} "
            f"random labels ({task.labels} labels, {task.replayed} replayed base rows):"
        )
        for role, name, figures in (
            ("active   ", task.active, task.active_figures),
            ("candidate", outcome.name, task.candidate_figures),
        ):
            typer.echo(
                f"  {role} {name}: macro-recall {figures.macro_recall:.2f}, "
                f"accuracy {figures.accuracy:.2f}"
            )
    kept = [t.task for t in outcome.tasks if t.task == "sentiment" or t.wins]
    typer.echo(
        f"registered {outcome.name!r} for {' and '.join(kept)} in {outcome.path} "
        f"({outcome.seconds:.1f} s)"
    )
    if outcome.emotion is not None and not outcome.emotion.wins:
        typer.echo("emotion: the candidate does not beat the active head; the head is kept")
    won = [t.task for t in outcome.tasks if t.wins]
    if outcome.activated:
        typer.echo(
            f"activated {outcome.name!r} for {' and '.join(outcome.activated)}; the workers "
            "switch within 10 s"
        )
    if activate and not outcome.sentiment.wins:
        typer.echo(
            f"not activated for sentiment: {outcome.name!r} does not beat "
            f"{outcome.sentiment.active!r} on the random labels; it stays registered "
            "(`model activate` serves it anyway)"
        )
    elif not activate and won:
        typer.echo(f"it beats the active model for {' and '.join(won)}: `--activate` serves it")
    elif not activate:
        typer.echo("it does not beat the active model; kept registered, not activated")
