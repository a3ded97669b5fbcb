"""The model registry's rows: the models the platform can serve (`analysis_models`, one row
per task a model serves) and which one serves each task and language (`model_activations`).
The caller owns the transaction.

Both tables are tiny (a few models, two tasks × a few languages), so the workers' poll reads
the activations whole (`activation_version`) rather than an aggregate: exact whatever the
hosts' clocks say, for the price of one small join.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.database import AnalysisModel, ModelActivation
from sentiment_platform.store.prepared import dialect_name

# (task, language, model name, activated_at, that model's imported_at), ordered: equal
# exactly when nothing a worker serves from has changed.
ActivationVersion = tuple[tuple[str, str, str, datetime, datetime | None], ...]


async def list_models(session: AsyncSession) -> list[AnalysisModel]:
    """Every registered model row, oldest import first (then by name and task)."""
    statement = select(AnalysisModel).order_by(
        AnalysisModel.imported_at, AnalysisModel.name, AnalysisModel.task
    )
    return list(await session.scalars(statement))


async def model_rows(session: AsyncSession, name: str) -> list[AnalysisModel]:
    """The rows of one model (one per task it serves); empty when there is no such model."""
    statement = select(AnalysisModel).where(AnalysisModel.name == name).order_by(AnalysisModel.task)
    return list(await session.scalars(statement))


async def put_model(
    session: AsyncSession,
    *,
    name: str,
    task: str,
    kind: str,
    languages: Sequence[str],
    source: str,
    size_bytes: int,
    agreement: float | None,
    imported_at: datetime,
    details: dict[str, Any],
) -> None:
    """Insert the (name, task) row, or replace what it says (a model imported again)."""
    values = {
        "name": name,
        "task": task,
        "kind": kind,
        "languages": list(languages),
        "source": source,
        "size_bytes": size_bytes,
        "agreement": agreement,
        "imported_at": imported_at,
        "details": details,
    }
    await session.execute(_upsert(session, AnalysisModel, values, ("name", "task")))


async def delete_models(session: AsyncSession, names: Sequence[str]) -> int:
    """Delete every row of these models; returns the rows deleted."""
    if not names:
        return 0
    result = await session.execute(delete(AnalysisModel).where(AnalysisModel.name.in_(list(names))))
    return int(getattr(result, "rowcount", 0) or 0)


async def list_activations(session: AsyncSession) -> list[ModelActivation]:
    """Every activation, by task then language (`*` sorts first)."""
    statement = select(ModelActivation).order_by(ModelActivation.task, ModelActivation.language)
    return list(await session.scalars(statement))


async def set_activation(
    session: AsyncSession, task: str, language: str, name: str, at: datetime
) -> None:
    """`name` serves `task` for `language` from `at` on (replacing whichever model did)."""
    values = {"task": task, "language": language, "name": name, "activated_at": at}
    await session.execute(_upsert(session, ModelActivation, values, ("task", "language")))


async def clear_activation(session: AsyncSession, task: str, language: str) -> int:
    """Drop the (task, language) activation; returns the rows deleted (0 or 1)."""
    result = await session.execute(
        delete(ModelActivation).where(
            ModelActivation.task == task, ModelActivation.language == language
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def rename_activations(session: AsyncSession, old: str, new: str, at: datetime) -> int:
    """Point the activations naming `old` at `new` (an upgraded embedded model)."""
    result = await session.execute(
        update(ModelActivation).where(ModelActivation.name == old).values(name=new, activated_at=at)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def activation_version(session: AsyncSession) -> ActivationVersion:
    """What the workers poll: every activation with its model's import time, so activating,
    deactivating, or importing an active model's name again all change it."""
    statement = (
        select(
            ModelActivation.task,
            ModelActivation.language,
            ModelActivation.name,
            ModelActivation.activated_at,
            AnalysisModel.imported_at,
        )
        .outerjoin(
            AnalysisModel,
            and_(
                AnalysisModel.name == ModelActivation.name,
                AnalysisModel.task == ModelActivation.task,
            ),
        )
        .order_by(ModelActivation.task, ModelActivation.language)
    )
    rows = (await session.execute(statement)).all()
    return tuple((row[0], row[1], row[2], row[3], row[4]) for row in rows)


def _upsert(
    session: AsyncSession, model: type[Any], values: dict[str, Any], keys: tuple[str, ...]
) -> Any:
    """INSERT `values`, or on a row with the same `keys` replace its other columns, in the
    session's dialect (both spell ON CONFLICT alike, from different insert constructs)."""
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    changed = {key: value for key, value in values.items() if key not in keys}
    return insert(model).values(values).on_conflict_do_update(index_elements=keys, set_=changed)
