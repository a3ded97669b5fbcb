"""The model registry: which models the platform can serve, and which one serves each task.

The rows live in the database (`store.models_registry`), so every process and every worker
sees one registry and one choice. The embedded model is always its first entry: its rows are
written here at start (`ensure_embedded`) under the shipped artifact's own name, since that
name is what every analysis it made already carries; an upgrade to a new artifact renames its
rows and the activations that named the old one. An activation for language `*` covers every
language no row names; no activation for a task means the embedded model, exactly as before
the registry existed, so nothing changes for a store that never activated anything.

Commands and the API call these functions inside their own transaction; the workers read the
choices through `serving_routes` (one pair per language an activation names, and `*`) when
`store.activation_version` moved; a pair reads a language only when both its models are
registered for it (`registry_backend.Routes`).
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import Task, parse_iso_8601, utcnow
from sentiment_platform.errors import Conflict, NotFound, Unprocessable
from sentiment_platform.models.database import AnalysisModel

log = logging.getLogger(__name__)

EMBEDDED = "embedded"  # kinds: the shipped model, an imported int8 ONNX classifier, or
ONNX = "onnx"  # the shipped encoder with heads `adapt` learnt (`adaptation.ADAPTED`)
ANY_LANGUAGE = "*"
EMBEDDED_LANGUAGES = ("en",)  # the shipped model was trained on English tweets alone
TASKS = tuple(task.value for task in Task)
LANGUAGE = re.compile(r"^[a-z]{2}$")  # ISO 639-1
MODEL_COLUMN_CHARS = 128  # what an analysis's `model` column holds


@dataclass(frozen=True, slots=True)
class EmbeddedIdentity:
    """The shipped artifact as the registry lists it."""

    name: str
    size_bytes: int
    details: dict[str, Any]


@lru_cache(maxsize=1)
def embedded_identity() -> EmbeddedIdentity | None:
    """The shipped model's name and size, read from its files (not loaded); None when this
    install has no embedded model."""
    import json

    from sentiment_platform.services.analysis.embedded_backend import artifact_files

    files = artifact_files()
    if not (files / "config.json").is_file():
        return None
    config = json.loads((files / "config.json").read_text("utf-8"))
    size = sum(_size(entry) for entry in files.iterdir() if entry.name != "MODEL_CARD.md")
    details = {key: config[key] for key in ("base_model", "layers", "max_tokens") if key in config}
    return EmbeddedIdentity(str(config["name"]), size, details)


def _size(entry: Traversable) -> int:
    if isinstance(entry, Path):
        return entry.stat().st_size if entry.is_file() else 0
    return len(entry.read_bytes()) if entry.is_file() else 0


def served_name(sentiment: str, emotion: str) -> str:
    """The `model` an analysis stores: one name when one model gives both labels, else
    `sentiment+emotion`, so a stored analysis names every model behind it."""
    return sentiment if sentiment == emotion else f"{sentiment}+{emotion}"


async def ensure_embedded(session: AsyncSession) -> str | None:
    """Write the embedded model's two rows if they are missing, and move rows and activations
    left by an older embedded artifact onto this one. Returns its name (None: not installed).
    Cheap when nothing changed: one read."""
    identity = embedded_identity()
    if identity is None:
        return None
    rows = await store.list_models(session)
    current = {row.task for row in rows if row.kind == EMBEDDED and row.name == identity.name}
    stale = sorted({row.name for row in rows if row.kind == EMBEDDED and row.name != identity.name})
    now = utcnow()
    for old in stale:
        await store.rename_activations(session, old, identity.name, now)
        log.info(
            "embedded model upgraded",
            extra={"event": "registry.embedded_upgraded", "old": old, "model": identity.name},
        )
    await store.delete_models(session, stale)
    for task in TASKS:
        if task not in current:
            await store.put_model(
                session,
                name=identity.name,
                task=task,
                kind=EMBEDDED,
                languages=list(EMBEDDED_LANGUAGES),
                source=EMBEDDED,
                size_bytes=identity.size_bytes,
                agreement=None,
                imported_at=now,
                details=identity.details,
            )
    return identity.name


async def register(
    session: AsyncSession,
    manifest: dict[str, Any],
    kind: str = ONNX,
    tasks: list[str] | None = None,
) -> None:
    """Add an imported (or adapted) model (its `model.json`, already checked by whoever wrote
    it) to the registry, one row per task it serves (`tasks`, default its `task`), or update
    its rows when it is imported again under the same name."""
    name = str(manifest["name"])
    served = tasks or [str(manifest["task"])]
    identity = embedded_identity()
    if identity is not None and name in (identity.name, EMBEDDED):
        raise Conflict(f"the name {name!r} is the embedded model's: choose another --name")
    rows = await store.model_rows(session, name)
    other_tasks = [row.task for row in rows if row.task not in served]
    if other_tasks:
        raise Conflict(
            f"a model named {name!r} already serves {other_tasks[0]}: choose another --name, "
            f"or `model remove {name}` first"
        )
    imported_at = manifest.get("imported_at")
    agreement = manifest.get("agreement")
    for task in served:
        await store.put_model(
            session,
            name=name,
            task=task,
            kind=kind,
            languages=list(manifest.get("languages") or ["en"]),
            source=str(manifest.get("source") or ""),
            size_bytes=int(manifest.get("size_bytes") or 0),
            agreement=float(agreement) if agreement is not None else None,
            imported_at=parse_iso_8601(imported_at) if imported_at else utcnow(),
            details=dict(manifest),
        )


async def _named(session: AsyncSession, name: str) -> list[AnalysisModel]:
    """The rows of `name` (`embedded` is accepted for the embedded model), or NotFound."""
    identity = embedded_identity()
    if name == EMBEDDED and identity is not None:
        name = identity.name
    rows = await store.model_rows(session, name)
    if not rows:
        raise NotFound(f"no model named {name!r}: `sentiment-platform model list` shows them")
    return sorted(rows, key=lambda row: task_order(row.task))


def task_order(task: str) -> int:
    return TASKS.index(task) if task in TASKS else len(TASKS)


def _language(language: str) -> str:
    code = language.strip().lower()
    if code != ANY_LANGUAGE and not LANGUAGE.match(code):
        raise Unprocessable(
            f"--language {language!r}: give an ISO 639-1 code (en, de, ...) or * for every "
            "language no other activation names"
        )
    return code


async def activate(
    session: AsyncSession, name: str, task: str | None = None, language: str = ANY_LANGUAGE
) -> list[tuple[str, str]]:
    """Make `name` serve `task` (every task it serves when None) for `language`; returns the
    (task, language) pairs it now serves. Workers switch when they next poll."""
    rows = await _named(session, name)
    name = rows[0].name
    served = {row.task: row for row in rows}
    if task is not None and task not in served:
        if task not in TASKS:
            raise Unprocessable(f"--task {task!r}: choose from {', '.join(TASKS)}")
        raise Unprocessable(f"--task {task}: model {name!r} serves {', '.join(served)}, not {task}")
    code = _language(language)
    tasks = [task] if task is not None else list(served)
    for each in tasks:
        row = served[each]
        if code != ANY_LANGUAGE and code not in row.languages:
            raise Unprocessable(
                f"--language {code}: model {name!r} is registered for "
                f"{', '.join(row.languages) or 'no language'}; use one of those, or *"
            )
    await _check_names_fit(session, name, tasks, code)
    now = utcnow()
    for each in tasks:
        if served[each].kind == EMBEDDED and code == ANY_LANGUAGE:
            await store.clear_activation(session, each, code)  # no row: the embedded model
        else:
            await store.set_activation(session, each, code, name, now)
    log.info(
        "model activated",
        extra={"event": "registry.activate", "model": name, "tasks": tasks, "language": code},
    )
    return [(each, code) for each in tasks]


async def _check_names_fit(
    session: AsyncSession, name: str, tasks: list[str], language: str
) -> None:
    """Refuse an activation whose two model names would not fit an analysis's `model`."""
    active = await active_names(session)
    for each in TASKS:
        if each in tasks:
            active[each][language] = name
    languages = set(active[Task.SENTIMENT]) | set(active[Task.EMOTION])
    for code in languages:
        pair = [active[each].get(code, active[each][ANY_LANGUAGE]) for each in TASKS]
        if len(served_name(*pair)) > MODEL_COLUMN_CHARS:
            raise Unprocessable(
                f"the names {pair[0]!r} and {pair[1]!r} together exceed "
                f"{MODEL_COLUMN_CHARS} characters, which an analysis records as its model; "
                "import one of them again with a shorter --name"
            )


async def active_names(session: AsyncSession) -> dict[str, dict[str, str]]:
    """{task: {language: model name}}; `*` always present (the embedded model when no row)."""
    identity = embedded_identity()
    fallback = identity.name if identity is not None else EMBEDDED
    active: dict[str, dict[str, str]] = {task: {ANY_LANGUAGE: fallback} for task in TASKS}
    for row in await store.list_activations(session):
        active.setdefault(row.task, {})[row.language] = row.name
    return active


async def remove(session: AsyncSession, name: str) -> str:
    """Delete the model's rows; refused for the embedded model and for any model that serves
    a task for some language. Returns its name (`remove_files` then deletes its files, once
    the caller committed)."""
    rows = await _named(session, name)
    name = rows[0].name
    if any(row.kind == EMBEDDED for row in rows):
        raise Conflict(f"{name!r} is the embedded model: it ships with the platform")
    serving = [
        f"{task} ({language})"
        for task, languages in (await active_names(session)).items()
        for language, active in languages.items()
        if active == name
    ]
    if serving:
        raise Conflict(
            f"model {name!r} is active for {', '.join(serving)}: activate another model "
            "there first (`model activate embedded` brings back the embedded one)"
        )
    await store.delete_models(session, [name])
    return name


def model_directory(settings: Settings, name: str) -> Path:
    """`MODELS_DIR/<name>`, refused if the name would lead outside MODELS_DIR."""
    root = settings.models_path.resolve()
    directory = (root / name).resolve()
    if directory == root or root not in directory.parents:
        raise Unprocessable(f"model name {name!r} is not a directory name inside MODELS_DIR")
    return directory


def remove_files(settings: Settings, name: str) -> bool:
    """Delete `MODELS_DIR/<name>/`; False when there was nothing to delete."""
    directory = model_directory(settings, name)
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True


# --- what a worker serves ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """The model a worker serves a task with: kind None when the activation names a model
    the registry no longer has (it cannot load; the previous one keeps serving). `languages`
    are those it is registered for: it labels no other."""

    task: str
    name: str
    kind: str | None
    imported_at: datetime | None
    languages: tuple[str, ...] = EMBEDDED_LANGUAGES


async def _choice(
    session: AsyncSession, task: str, serving: str, row: AnalysisModel | None = None
) -> Choice:
    """The Choice of `serving` for `task`, from its registry row (read when not given)."""
    if row is None:
        row = next((r for r in await store.model_rows(session, serving) if r.task == task), None)
    identity = embedded_identity()
    if row is None and identity is not None and serving == identity.name:
        return Choice(task, serving, EMBEDDED, None)
    if row is None:
        return Choice(task, serving, None, None, ())
    return Choice(task, serving, row.kind, row.imported_at, tuple(row.languages or ()))


async def serving_choice(session: AsyncSession, name: str | None = None) -> dict[str, Choice]:
    """{task: Choice}: the models active for language `*`, or with `name` serving the
    task(s) it serves (a rescore with `--model NAME`: the other task keeps its active
    model). NotFound for an unknown name."""
    active = await active_names(session)
    named = {row.task: row for row in await _named(session, name)} if name else {}
    choices: dict[str, Choice] = {}
    for task in TASKS:
        row = named.get(task)
        serving = row.name if row is not None else active[task][ANY_LANGUAGE]
        choices[task] = await _choice(session, task, serving, row)
    return choices


async def serving_routes(session: AsyncSession) -> dict[str, dict[str, Choice]]:
    """{language: {task: Choice}}: `*` (what every language no activation names is offered)
    and each language some activation names, whose other task falls back to its `*` model.
    Whether a pair may read a language is the pair's registered languages' say
    (`registry_backend.Routes`), not this map's."""
    active = await active_names(session)
    languages = sorted({code for by_language in active.values() for code in by_language})
    routes: dict[str, dict[str, Choice]] = {}
    for code in languages:
        routes[code] = {}
        for task in TASKS:
            serving = active[task].get(code, active[task][ANY_LANGUAGE])
            routes[code][task] = await _choice(session, task, serving)
    return routes
