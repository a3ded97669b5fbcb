"""Rescoring stored posts: which posts a rescore still has to do, and rewriting one batch's
analyses with the counts that follow them. The caller owns the transaction.

A post is done once its stored `model` is the target model's name, so the walk (by id,
`posts_to_rescore`) needs no state of its own: a run that was killed, and a post the live
workers analysed with the target model meanwhile, are both simply not picked again.

`relabel` rewrites a post only if it still holds the labels and model the rescore read
(`UPDATE … WHERE model = :old AND sentiment = :old …`): the UPDATE is atomic, so when it
matches, those old values are exactly what the counts move away from, and when another
writer got there first (a second rescore, retention's delete) it matches nothing and moves
nothing. The live worker never rewrites an analysed post (its inserts skip a known
post_id), so it cannot meet a rescore on a post row. The post rollups and the model rollups
move in the same transaction, in the post's `created_at` cells; `analyzed_at` is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import Prediction
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost
from sentiment_platform.store import model_rollups, rollups
from sentiment_platform.store.prepared import Reader, dialect_name


@dataclass(frozen=True, slots=True)
class Scope:
    """Which stored posts a rescore touches: created in [since, until), of `source`."""

    since: datetime | None = None
    until: datetime | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Labelled:
    """An analysed post as a rescore read it: what its new analysis replaces."""

    id: int
    post_id: str
    source: str
    content: str
    created_at: datetime
    sentiment: str
    emotion: str
    model: str
    analyzed_at: datetime
    language: str | None
    duplicate_of: str | None


_POSTS_TABLE: Any = SocialMediaPost.__table__
_ANALYSES_TABLE: Any = SentimentAnalysis.__table__
_POSTS = _POSTS_TABLE.c
_ANALYSES = _ANALYSES_TABLE.c
_LABELS = ("sentiment", "emotion", "confidence", "emotion_confidence", "model")


def _pending(scope: Scope, model: str) -> list[ColumnElement[bool]]:
    """Analysed posts in the scope whose labels come from another model than `model`."""
    clauses = [_POSTS.model.is_not(None), _POSTS.sentiment.is_not(None), _POSTS.model != model]
    if scope.since is not None:
        clauses.append(_POSTS.created_at >= scope.since)
    if scope.until is not None:
        clauses.append(_POSTS.created_at < scope.until)
    if scope.source is not None:
        clauses.append(_POSTS.source == scope.source)
    return clauses


async def count_to_rescore(reader: Reader, scope: Scope, model: str) -> int:
    """How many posts of the scope are not labelled by `model` yet (one scan: the progress
    bar's total)."""
    counted = await reader.scalar(select(func.count()).where(*_pending(scope, model)))
    return int(counted or 0)


async def posts_to_rescore(
    reader: Reader, scope: Scope, model: str, after: int, limit: int
) -> list[Labelled]:
    """The next `limit` posts of the scope, by id after `after`, not labelled by `model`."""
    rows = await reader.execute(
        select(*(_POSTS[field.name] for field in fields(Labelled)))
        .where(_POSTS.id > after, *_pending(scope, model))
        .order_by(_POSTS.id)
        .limit(limit)
    )
    return [Labelled(*row) for row in rows]


async def relabel(
    session: AsyncSession, pairs: Sequence[tuple[Labelled, Prediction]]
) -> list[tuple[Labelled, Prediction]]:
    """Give each post its new analysis, on the post row and its analysis row, if it still
    holds what was read; move its counts in the post rollups and the model rollups. Returns
    the pairs it rewrote (the others were changed or deleted meanwhile)."""
    if not pairs:
        return []
    ordered = sorted(pairs, key=lambda pair: pair[0].id)  # one lock order for every writer
    postgres = dialect_name(session) == "postgresql"
    if postgres:
        ids = await _update_pg(session, _POSTS_TABLE.name, _GUARD, ordered)
    else:
        ids = await _update_posts_lite(session, ordered)
    changed = [pair for pair in ordered if pair[0].id in ids]
    if not changed:
        return []
    if postgres:
        await _update_pg(session, _ANALYSES_TABLE.name, _ANALYSIS_GUARD, changed)
    else:
        await session.execute(
            update(_ANALYSES_TABLE)
            .where(_ANALYSES.post_ref == bindparam("ref"))
            .values({name: bindparam(f"new_{name}") for name in _LABELS}),
            [{"ref": post.id} | _new(prediction) for post, prediction in changed],
        )
    labels: Counter[rollups.Key] = Counter()
    models: Counter[model_rollups.Key] = Counter()
    for post, new in changed:
        minute = rollups.floor("m", post.created_at)
        kind = (post.language or "", post.duplicate_of is not None)
        labels[(minute, post.source, post.sentiment, post.emotion, *kind)] -= 1
        labels[(minute, post.source, new.sentiment.value, new.emotion.value, *kind)] += 1
        models[(minute, post.source, post.model)] -= 1
        models[(minute, post.source, new.model)] += 1
    await rollups.add(session, labels)
    await model_rollups.add(session, models)
    return changed


def _new(prediction: Prediction) -> dict[str, Any]:
    return {
        "new_sentiment": prediction.sentiment.value,
        "new_emotion": prediction.emotion.value,
        "new_confidence": prediction.confidence,
        "new_emotion_confidence": prediction.emotion_confidence,
        "new_model": prediction.model,
    }


# What a row must still hold to be rewritten: (column, the `Labelled` field it must equal);
# the first is the row's key. A post must still hold the labels read; its analysis row
# follows the post (rewritten only for posts that were).
_GUARD = (("id", "id"), ("model", "model"), ("sentiment", "sentiment"), ("emotion", "emotion"))
_ANALYSIS_GUARD = (("post_ref", "id"),)


async def _update_pg(
    session: AsyncSession,
    table: str,
    guard: tuple[tuple[str, str], ...],
    pairs: Sequence[tuple[Labelled, Prediction]],
) -> set[int]:
    """One statement for the batch: the old and new values as arrays (`unnest`), joined on
    the key (an index scan per row), guarded by the old values; the keys it rewrote come
    back."""
    new = [_new(prediction) for _, prediction in pairs]
    params: dict[str, list[Any]] = {
        f"old_{column}": [getattr(post, field) for post, _ in pairs] for column, field in guard
    } | {f"new_{name}": [row[f"new_{name}"] for row in new] for name in _LABELS}
    return {key for (key,) in await session.execute(_rewrite(table, guard), params)}


@cache
def _rewrite(table_name: str, guard: tuple[tuple[str, str], ...]) -> Any:
    table = _POSTS_TABLE if table_name == _POSTS_TABLE.name else _ANALYSES_TABLE
    columns = [column for column, _ in guard]
    types = {f"old_{name}": table.c[name].type for name in columns} | {
        f"new_{name}": table.c[name].type for name in _LABELS
    }
    values = select(
        *(
            func.unnest(bindparam(name, type_=ARRAY(kind))).label(name)
            for name, kind in types.items()
        )
    ).subquery("v")
    return (
        update(table)
        .where(*(table.c[name] == values.c[f"old_{name}"] for name in columns))
        .values({name: values.c[f"new_{name}"] for name in _LABELS})
        .returning(table.c[columns[0]])
    )


async def _update_posts_lite(
    session: AsyncSession, pairs: Sequence[tuple[Labelled, Prediction]]
) -> set[int]:
    """SQLite: one guarded UPDATE per post (in-process, so each costs little), counted by
    its rowcount."""
    statement = (
        update(_POSTS_TABLE)
        .where(*(_POSTS[column] == bindparam(f"old_{column}") for column, _ in _GUARD))
        .values({name: bindparam(f"new_{name}") for name in _LABELS})
    )
    rewritten = set()
    for post, prediction in pairs:
        old = {f"old_{column}": getattr(post, field) for column, field in _GUARD}
        result: Any = await session.execute(statement, old | _new(prediction))
        if result.rowcount:
            rewritten.add(post.id)
    return rewritten
