"""People's labels on posts: set, cleared, and read back as quality's aggregates.

A label lives on its post's row (`label_sentiment`, `label_emotion`, `labelled_at`), so a
page shows it without a join and setting one is one UPDATE on the unique `post_id` index.
Whether a label is a *random* label is not stored with it: it follows from the review
draws (`review_draws`), read when the labels are aggregated, so a label set before or
after its post's random draw counts the same. The rule is the label rollups' (models/
label_rollup_sql.py): a post's widest random draw must cover the range read; the metrics
read the same labels from those rollups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from sentiment_platform.domain import LabelView, PostLabel
from sentiment_platform.models.database import ReviewDraw, SocialMediaPost
from sentiment_platform.models.label_rollup_sql import WIDEST_FIRST
from sentiment_platform.store.prepared import Reader, write_rows

RANDOM = "random"  # the review strategy whose draws make a label a random label
UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class LabelScope:
    """The posts a draw or a quality read is about: a source and a `created_at` range."""

    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def label_columns(label: Mapping[str, Any] | None, at: datetime) -> dict[str, Any]:
    """The post row's label columns for a label brought with the post (`Post.label`,
    dumped), set at `at`."""
    if label is None:
        return {"label_sentiment": None, "label_emotion": None, "labelled_at": None}
    emotion = label.get("emotion")
    return {
        "label_sentiment": str(label["sentiment"]),
        "label_emotion": None if emotion is None else str(emotion),
        "labelled_at": at,
    }


def view_of(post: SocialMediaPost) -> LabelView | None:
    """A post row's label as items show it."""
    if post.label_sentiment is None or post.labelled_at is None:
        return None
    return LabelView(
        sentiment=post.label_sentiment, emotion=post.label_emotion, labelled_at=post.labelled_at
    )


_POSTS: Any = SocialMediaPost.__table__
_SET = (
    update(_POSTS)
    .where(_POSTS.c.post_id == bindparam("key"))
    .values(
        label_sentiment=bindparam("new_sentiment"),
        label_emotion=bindparam("new_emotion"),
        labelled_at=bindparam("new_at", type_=_POSTS.c.labelled_at.type),
    )
    .returning(_POSTS.c.id)
)
_CLEAR = (
    update(_POSTS)
    .where(_POSTS.c.post_id == bindparam("key"))
    .values(label_sentiment=None, label_emotion=None, labelled_at=None)
    .returning(_POSTS.c.id)
)


async def set_label(
    connection: AsyncConnection, post_id: str, label: PostLabel, at: datetime
) -> LabelView | None:
    """Set (or replace: the last write wins) a post's label, committed; None when no such
    post. One statement on a bare connection (`write_rows`): a label PUT is a hot write."""
    emotion = None if label.emotion is None else label.emotion.value
    params = {
        "key": post_id,
        "new_sentiment": label.sentiment.value,
        "new_emotion": emotion,
        "new_at": at,
    }
    if not await write_rows(connection, _SET, params):
        return None
    return LabelView(sentiment=label.sentiment, emotion=label.emotion, labelled_at=at)


async def clear_label(connection: AsyncConnection, post_id: str) -> bool:
    """Remove a post's label (none to remove is fine), committed; False when no such post."""
    return bool(await write_rows(connection, _CLEAR, {"key": post_id}))


# --- quality's aggregates --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelCell:
    """How many labelled posts in a scope had this label and this stored prediction (None:
    not analysed), by this model, random or not; `latest` is when the newest was analysed."""

    label: str
    prediction: str | None
    model: str | None
    random: bool
    count: int
    latest: datetime | None


def covering(draw: Any, shape: tuple[bool, bool, bool]) -> list[Any]:
    """A draw's filter covers a scope of this shape (source, since, until given) when every
    post of the scope was in the draw's: a uniform draw over a wider set is uniform over the
    scope, one over a narrower set is not (a draw from one source says nothing of the rest)."""
    source, since, until = shape
    return [
        or_(draw.source.is_(None), draw.source == bindparam("source")) if source else
        draw.source.is_(None),
        or_(draw.since.is_(None), draw.since <= bindparam("since", type_=draw.since.type))
        if since else draw.since.is_(None),
        or_(draw.until.is_(None), draw.until >= bindparam("until", type_=draw.until.type))
        if until else draw.until.is_(None),
    ]  # fmt: skip


def scoped(scope: LabelScope) -> tuple[tuple[bool, bool, bool], dict[str, Any]]:
    """A scope's shape (which filters are set) and its parameters."""
    shape = (scope.source is not None, scope.since is not None, scope.until is not None)
    named = {"source": scope.source, "since": scope.since, "until": scope.until}
    params = {name: value for name, value in named.items() if value is not None}
    return shape, params


def post_filters(post: Any, shape: tuple[bool, bool, bool]) -> list[Any]:
    source, since, until = shape
    clauses = []
    if source:
        clauses.append(post.source == bindparam("source"))
    if since:
        clauses.append(post.created_at >= bindparam("since", type_=post.created_at.type))
    if until:
        clauses.append(post.created_at < bindparam("until", type_=post.created_at.type))
    return clauses


@cache
def _cells_statement(shape: tuple[bool, bool, bool]) -> Any:
    post, draw = SocialMediaPost, aliased(ReviewDraw, name="widest")
    widest = (
        select(ReviewDraw.id)
        .where(ReviewDraw.post_ref == post.id, ReviewDraw.strategy == RANDOM)
        .order_by(text(WIDEST_FIRST))
        .limit(1)
        .correlate(post)
        .scalar_subquery()
    )
    random = exists().where(draw.id == widest, *covering(draw, shape)).label("random")
    labelled = (
        select(post.label_sentiment, post.sentiment, post.model, post.analyzed_at, random)
        .where(post.label_sentiment.is_not(None), *post_filters(post, shape))
        .subquery("labelled")
    )
    c = labelled.c
    return select(
        c.label_sentiment, c.sentiment, c.model, c.random, func.count(), func.max(c.analyzed_at)
    ).group_by(c.label_sentiment, c.sentiment, c.model, c.random)


async def label_cells(reader: Reader, scope: LabelScope) -> list[LabelCell]:
    """Every label in the scope (the post's `created_at` in it), counted by (label, stored
    prediction, model, random): O(labels), on the partial index of labelled posts."""
    shape, params = scoped(scope)
    rows = (await reader.execute(_cells_statement(shape), params)).all()
    return [
        LabelCell(label, prediction, model, bool(random), int(count), latest)
        for label, prediction, model, random, count, latest in rows
    ]


@cache
def _skipped_statement(shape: tuple[bool, bool, bool]) -> Any:
    post, draw = SocialMediaPost, ReviewDraw
    return (
        select(func.count(func.distinct(post.id)))
        .select_from(post)
        .join(draw, draw.post_ref == post.id)
        .where(
            draw.strategy == RANDOM,
            draw.skipped_at.is_not(None),
            post.label_sentiment.is_(None),
            *covering(draw, shape),
            *post_filters(post, shape),
        )
    )


async def skipped_count(reader: Reader, scope: LabelScope) -> int:
    """Posts of the scope a covering random draw handed out, skipped, and still unlabelled:
    the holes people left in the random sample (they skip the hard posts)."""
    shape, params = scoped(scope)
    return int((await reader.execute(_skipped_statement(shape), params)).scalar_one())
