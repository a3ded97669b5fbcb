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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, exists, func, or_, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from sentiment_platform.domain import LabelView, PostLabel
from sentiment_platform.models.database import ReviewDraw, SocialMediaPost
from sentiment_platform.models.label_rollup_sql import WIDEST_FIRST
from sentiment_platform.store.prepared import Reader, write_rows

RANDOM = "random"  # the review strategy whose draws make a label a random label
UNCERTAIN = "uncertain"


@dataclass(frozen=True, slots=True)
class LabelScope:
    """The posts a draw or a quality read is about: a source and a `created_at` range; for
    `label_cells` also one language and whether copies are left out (a uniform draw over
    every post is uniform over such a part of them, so no draw has to name these)."""

    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    language: str | None = None
    unique: bool = False  # only the first post of each group of copies


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
_CLEAR = (
    update(_POSTS)
    .where(_POSTS.c.post_id == bindparam("key"))
    .values(label_sentiment=None, label_emotion=None, labelled_at=None)
    .returning(_POSTS.c.id)
)
MAX_LABEL_WRITES = 64  # labels one statement sets at most


@dataclass(frozen=True, slots=True)
class LabelWrite:
    """One label to set on one post, set at `at`."""

    post_id: str
    label: PostLabel
    at: datetime


@cache
def _set_statement(rows: int) -> Any:
    """UPDATE … FROM the `rows` labels given (key, sentiment, emotion, time) RETURNING the
    post_ids found: one statement whatever the batch's size, on both stores."""
    text_type, at_type = _POSTS.c.post_id.type, _POSTS.c.labelled_at.type
    given = [
        select(
            bindparam(f"k{i}", type_=text_type).label("k"),
            bindparam(f"s{i}", type_=text_type).label("s"),
            bindparam(f"e{i}", type_=text_type).label("e"),
            bindparam(f"t{i}", type_=at_type).label("t"),
        )
        for i in range(rows)
    ]
    labels = (union_all(*given) if rows > 1 else given[0]).subquery("given")
    return (
        update(_POSTS)
        .where(_POSTS.c.post_id == labels.c.k)
        .values(label_sentiment=labels.c.s, label_emotion=labels.c.e, labelled_at=labels.c.t)
        .returning(_POSTS.c.post_id)
    )


async def set_labels(connection: AsyncConnection, writes: Sequence[LabelWrite]) -> set[str]:
    """Set (or replace: the last write wins, here the latest in `writes`) posts' labels,
    committed, in one statement on a bare connection (`write_rows`): label PUTs are a hot
    write, and the API sets those that arrive together at once (api/label_writes.py).
    Returns the post_ids that exist (a label on any other is not set). At most
    MAX_LABEL_WRITES distinct posts."""
    latest = {write.post_id: write for write in writes}  # one row per post: its last write
    if len(latest) > MAX_LABEL_WRITES:
        raise ValueError(f"at most {MAX_LABEL_WRITES} labels a statement, got {len(latest)}")
    params: dict[str, Any] = {}
    for i, write in enumerate(latest.values()):
        emotion = None if write.label.emotion is None else write.label.emotion.value
        params |= {f"k{i}": write.post_id, f"s{i}": write.label.sentiment.value}
        params |= {f"e{i}": emotion, f"t{i}": write.at}
    if not latest:
        return set()
    rows = await write_rows(connection, _set_statement(len(latest)), params)
    return {str(post_id) for (post_id,) in rows}


async def set_label(
    connection: AsyncConnection, post_id: str, label: PostLabel, at: datetime
) -> LabelView | None:
    """Set one post's label, committed; None when no such post."""
    if post_id not in await set_labels(connection, [LabelWrite(post_id, label, at)]):
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
def _cells_statement(shape: tuple[bool, bool, bool], language: bool, unique: bool) -> Any:
    post, draw = SocialMediaPost, aliased(ReviewDraw, name="widest")
    narrower = [post.language == bindparam("language")] if language else []
    if unique:
        narrower.append(post.duplicate_of.is_(None))
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
        .where(post.label_sentiment.is_not(None), *post_filters(post, shape), *narrower)
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
    if scope.language is not None:
        params["language"] = scope.language
    statement = _cells_statement(shape, scope.language is not None, scope.unique)
    rows = (await reader.execute(statement, params)).all()
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


# --- what adaptation learns from --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelledText:
    """A labelled post's text and label; `random` when a random draw handed it out (under
    any filter: within its filter it is a fair sample, never one chosen for being hard)."""

    content: str
    sentiment: str
    emotion: str | None
    random: bool


async def labelled_texts(session: AsyncSession, languages: Sequence[str]) -> list[LabelledText]:
    """Every labelled post's text and label among the posts in `languages` (and those of no
    known language: "und", or stored before detection), oldest post first: O(labels), on the
    partial index of labelled posts."""
    post, draw = SocialMediaPost, ReviewDraw
    random = exists().where(draw.post_ref == post.id, draw.strategy == RANDOM)
    readable = or_(post.language.is_(None), post.language.in_([*languages, "und"]))
    statement = (
        select(post.content, post.label_sentiment, post.label_emotion, random)
        .where(post.label_sentiment.is_not(None), readable)
        .order_by(post.id)
    )
    rows = (await session.execute(statement)).all()
    return [LabelledText(str(c), str(s), e, bool(r)) for c, s, e, r in rows]
