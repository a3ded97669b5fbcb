"""What `model list` and `GET /api/models` show: every model of the registry (the embedded
one first), the tasks it serves, and where it is active.

Apart from `registry`, which changes the rows, so that both the CLI and the API read one
view and the API's response model is this module's `ModelsView`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.domain import utcnow
from sentiment_platform.models.database import AnalysisModel
from sentiment_platform.services.analysis.registry import (
    EMBEDDED,
    TASKS,
    active_names,
    embedded_identity,
    task_order,
)


class Activation(BaseModel):
    task: str
    language: str


class ModelView(BaseModel):
    """One model: the tasks it serves, and where it is active."""

    name: str
    kind: str
    tasks: list[str]
    languages: list[str]
    source: str
    size_bytes: int
    agreement: float | None
    imported_at: datetime
    active: list[Activation]
    details: dict[str, Any]


class ModelsView(BaseModel):
    """`GET /api/models`: every model (the embedded one first) and, per task, the model
    serving each language (`*`: every language no other entry names)."""

    items: list[ModelView]
    active: dict[str, dict[str, str]]


async def catalogue(session: AsyncSession) -> ModelsView:
    """The registry as users see it. The embedded model is listed even before its rows are
    written (a process that could not reach the store at start)."""
    active = await active_names(session)
    by_name: dict[str, list[AnalysisModel]] = {}
    for row in sorted(await store.list_models(session), key=lambda r: task_order(r.task)):
        by_name.setdefault(row.name, []).append(row)
    items = [_view(rows, active) for rows in by_name.values()]
    identity = embedded_identity()
    if identity is not None and identity.name not in by_name:
        items.append(
            ModelView(
                name=identity.name,
                kind=EMBEDDED,
                tasks=list(TASKS),
                languages=["en"],
                source=EMBEDDED,
                size_bytes=identity.size_bytes,
                agreement=None,
                imported_at=utcnow(),
                active=_where(identity.name, active),
                details=identity.details,
            )
        )
    items.sort(key=lambda item: (item.kind != EMBEDDED, item.imported_at, item.name))
    return ModelsView(items=items, active=active)


def _where(name: str, active: dict[str, dict[str, str]]) -> list[Activation]:
    return [
        Activation(task=task, language=language)
        for task, languages in active.items()
        for language, serving in languages.items()
        if serving == name
    ]


def _view(rows: list[AnalysisModel], active: dict[str, dict[str, str]]) -> ModelView:
    first = rows[0]
    return ModelView(
        name=first.name,
        kind=first.kind,
        tasks=[row.task for row in rows],
        languages=list(first.languages),
        source=first.source,
        size_bytes=first.size_bytes,
        agreement=first.agreement,
        imported_at=first.imported_at,
        active=_where(first.name, active),
        details=dict(first.details),
    )
