"""`model`: the models a user brings and the registry that serves them, registered by `cli`
(`model import|list|activate|remove`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from sentiment_platform.config import Settings, get_settings
from sentiment_platform.domain import Task

T = TypeVar("T")
model_app = typer.Typer(no_args_is_help=True, help="Models brought from Hugging Face.")


def _configure_logging(settings: Settings) -> None:
    from sentiment_platform.telemetry import configure_logging

    configure_logging(settings)


@model_app.command("import")
def import_model(
    source: Annotated[str, typer.Argument(help="a local Hugging Face directory or a hub id")],
    task: Annotated[Task, typer.Option(help="what the model is asked")],
    name: Annotated[
        str | None, typer.Option(help="default: the source's last part, lower-cased")
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(help="model label=platform label, comma-separated (e.g. LABEL_0=negative)"),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option(help="tokens a text is cut to (default: the model's, ≤ 512)")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="ISO 639-1 codes it serves, comma-separated (default: en)")
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="texts to check int8 against fp32 on: one a line, or a CSV with `text`",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="replace a model of that name; keep a graph below 97 % agreement")
    ] = False,
) -> None:
    """Convert a Hugging Face sequence classifier to int8 ONNX and keep it in MODELS_DIR.

    Prints the int8 graph's agreement with the fp32 original on a sample and its posts/s;
    the last line is the model's model.json.
    """
    from sentiment_platform.training.hf_inputs import (
        ModelImportError,
        parse_label_map,
        parse_languages,
    )

    settings = get_settings()
    _configure_logging(settings)
    try:
        from sentiment_platform.training.hf_import import MIN_AGREEMENT, ImportRequest
        from sentiment_platform.training.hf_import import import_model as run_import
    except ImportError as exc:
        typer.echo(
            f"model import needs torch, transformers and onnx ({exc.name} is missing): "
            "pip install 'sentiment-platform[train]'",
            err=True,
        )
        raise typer.Exit(2) from None
    try:
        request = ImportRequest(
            source=source,
            task=task,
            models_dir=settings.models_path,
            name=name,
            label_map=parse_label_map(label_map),
            max_length=max_length,
            languages=parse_languages(language),
            sample=sample,
            force=force,
            local_files_only=settings.model_local_files_only,
        )
        result = run_import(request)
    except ModelImportError as error:
        typer.echo(f"model import: {error}", err=True)
        raise typer.Exit(2) from None
    manifest = result.manifest
    typer.echo(
        f"agreement with fp32: {manifest['agreement']:.1%} of {manifest['sample_size']} texts"
    )
    if manifest["agreement"] < MIN_AGREEMENT:
        typer.echo("warning: below 97 %; kept because of --force", err=True)
    typer.echo(f"int8 speed: {manifest['posts_per_s']} posts/s (batch 32)")
    if result.fused is None:
        typer.echo(f"note: no transformer fusion for {manifest['architecture']}", err=True)
    from sentiment_platform.services.analysis.registry import register

    _registry(settings, lambda session: register(session, manifest))
    typer.echo(f"imported {manifest['name']!r} into {result.path}; `model activate` serves it")
    typer.echo(json.dumps(manifest))


# --- the registry: list, activate, remove (and registering what `import` wrote) ----------


def _registry(settings: Settings, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(session)` in one transaction on the configured store (schema at head, the
    embedded model's rows written first); a refusal is one line on stderr and exit 1."""
    from sentiment_platform.cli.store import _run_store
    from sentiment_platform.errors import PlatformError
    from sentiment_platform.services.analysis.registry import ensure_embedded

    async def run(sessions: Any) -> T:
        async with sessions() as session, session.begin():
            await ensure_embedded(session)
            return await work(session)

    try:
        return _run_store(settings, run)
    except PlatformError as error:
        typer.echo(f"model: {error.detail}", err=True)
        raise typer.Exit(1) from None


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1_000_000:.1f} MB" if size_bytes >= 100_000 else f"{size_bytes} B"


@model_app.command("list")
def list_models() -> None:
    """The registry: every model (the embedded one first), and where each is active."""
    from rich.console import Console
    from rich.table import Table

    from sentiment_platform.services.analysis.model_catalogue import catalogue

    settings = get_settings()
    _configure_logging(settings)
    view = _registry(settings, catalogue)
    table = Table("name", "task", "languages", "source", "size", "agreement", "imported", "active")
    for item in view.items:
        active = ", ".join(f"{a.task} ({a.language})" for a in item.active) or "-"
        agreement = "-" if item.agreement is None else f"{item.agreement:.1%}"
        table.add_row(
            item.name,
            ", ".join(item.tasks),
            ", ".join(item.languages),
            item.source,
            _size(item.size_bytes),
            agreement,
            item.imported_at.strftime("%Y-%m-%d %H:%M UTC"),
            active,
        )
    Console(width=200).print(table)


@model_app.command("activate")
def activate_model(
    name: Annotated[
        str, typer.Argument(help="a model of `model list` (`embedded`: the shipped one)")
    ],
    task: Annotated[
        Task | None, typer.Option(help="needed only for a model serving both (the embedded one)")
    ] = None,
    language: Annotated[
        str, typer.Option(help="an ISO 639-1 code the model is registered for, or * for the rest")
    ] = "*",
) -> None:
    """Serve NAME for a task and language; every worker switches within seconds, no restart."""
    from sentiment_platform.services.analysis.registry import activate

    settings = get_settings()
    _configure_logging(settings)
    task_name = task.value if task is not None else None
    served = _registry(settings, lambda session: activate(session, name, task_name, language))
    where = ", ".join(f"{each} ({code})" for each, code in served)
    typer.echo(f"activated {name!r} for {where}; the workers switch within 10 s")


@model_app.command("remove")
def remove_model(name: Annotated[str, typer.Argument(help="a model of `model list`")]) -> None:
    """Delete an imported model from the registry and MODELS_DIR; refused while it is active."""
    from sentiment_platform.services.analysis.registry import remove, remove_files

    settings = get_settings()
    _configure_logging(settings)
    removed = _registry(settings, lambda session: remove(session, name))
    files = remove_files(settings, removed)
    where = f" and {settings.models_path / removed}" if files else ""
    typer.echo(f"removed {removed!r} from the registry{where}")
