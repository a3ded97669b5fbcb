"""`model`: the models a user brings, registered by `cli` (`model import`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sentiment_platform.config import Settings, get_settings
from sentiment_platform.domain import Task

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
    typer.echo(f"imported {manifest['name']!r} into {result.path}")
    typer.echo(json.dumps(manifest))
