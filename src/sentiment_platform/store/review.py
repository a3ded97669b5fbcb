"""The review queue's reads and writes: candidates for a random draw looked up by integer
key, the whole population when a filter is too narrow for that, the uncertain posts, the
record of every post handed out, and skips. The draw itself (which keys, in which order) is
`services/trust/review.py`'s; nothing here orders by `random()`, which would sort the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.database import ReviewDraw, SocialMediaPost
from sentiment_platform.store.labels import LabelScope, post_filters, scoped

# The page's own item shape, so a review item is a post item to the byte.
from sentiment_platform.store.post_items import _ITEM_QUERY, PostItem, _api_stamp_of, _items
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows

_DRAWS: Any = ReviewDraw.__table__
# (integer key, labelled, skipped) of an analysed post in a draw's filter
Candidate = tuple[int, bool, bool]


async def post_key_bounds(reader: Reader) -> tuple[int, int] | None:
    """The smallest and largest post key (two ends of the primary key index); None: empty."""
    [(low, high)] = await fetch_rows(reader, _BOUNDS, {})
    return None if low is None else (int(low), int(high))


# Two scalar subqueries: SQLite reads min() or max() off the index only when it is the
# query's one aggregate (both in one SELECT scan the table).
_BOUNDS = select(
    select(func.min(SocialMediaPost.id)).scalar_subquery(),
    select(func.max(SocialMediaPost.id)).scalar_subquery(),
)


def _candidate_columns() -> tuple[Any, ...]:
    post, draw = SocialMediaPost, ReviewDraw
    skipped = exists().where(draw.post_ref == post.id, draw.skipped_at.is_not(None))
    return post.id, post.label_sentiment.is_not(None), skipped


@cache
def _candidates_statement(dialect: str, shape: tuple[bool, bool, bool]) -> Any:
    post = SocialMediaPost
    if dialect == "postgresql":
        keyed = post.id == any_(bindparam("refs", type_=ARRAY(BigInteger)))
    else:
        keyed = post.id.in_(bindparam("refs", expanding=True))
    return select(*_candidate_columns()).where(
        keyed, post.sentiment.is_not(None), *post_filters(post, shape)
    )


async def draw_candidates(
    reader: Reader, refs: Sequence[int], scope: LabelScope
) -> list[Candidate]:
    """Which of these keys are analysed posts in the scope: one lookup per key on the
    primary key index, whatever the table holds. In no particular order."""
    if not refs:
        return []
    shape, params = scoped(scope)
    statement = _candidates_statement(dialect_name(reader), shape)
    rows = await fetch_rows(reader, statement, params | {"refs": list(refs)})
    return [(int(ref), bool(labelled), bool(skipped)) for ref, labelled, skipped in rows]


@cache
def _population_statement(shape: tuple[bool, bool, bool]) -> Any:
    post = SocialMediaPost
    return select(*_candidate_columns()).where(
        post.sentiment.is_not(None), *post_filters(post, shape)
    )


async def draw_population(reader: Reader, scope: LabelScope) -> list[Candidate]:
    """Every analysed post in the scope: for a filter so narrow that guessing keys would
    rarely hit one. Costs what the scope holds; the caller asks only for small ones."""
    shape, params = scoped(scope)
    rows = await fetch_rows(reader, _population_statement(shape), params)
    return [(int(ref), bool(labelled), bool(skipped)) for ref, labelled, skipped in rows]


@cache
def _uncertain_statement(shape: tuple[bool, bool, bool]) -> Any:
    post, draw = SocialMediaPost, ReviewDraw
    skipped = exists().where(draw.post_ref == post.id, draw.skipped_at.is_not(None))
    recent = (
        select(post.id, post.confidence)
        .where(
            post.sentiment.is_not(None),
            post.label_sentiment.is_(None),
            ~skipped,
            *post_filters(post, shape),
        )
        .order_by(post.created_at.desc(), post.id.desc())
        .limit(bindparam("pool"))
        .subquery("recent")
    )
    return (
        select(recent.c.id)
        .order_by(recent.c.confidence.asc(), recent.c.id.desc())
        .limit(bindparam("limit"))
    )


async def uncertain_posts(reader: Reader, scope: LabelScope, limit: int, pool: int) -> list[int]:
    """The `limit` least confident of the newest `pool` analysed, unlabelled, unskipped
    posts of the scope (newest by `created_at`: a walk of the page index that stops at
    `pool`), least confident first."""
    shape, params = scoped(scope)
    statement = _uncertain_statement(shape)
    rows = await fetch_rows(reader, statement, params | {"limit": limit, "pool": pool})
    return [int(ref) for (ref,) in rows]


async def record_draws(
    session: AsyncSession, refs: Sequence[int], strategy: str, scope: LabelScope, at: datetime
) -> None:
    """Record each post handed out (or, in a random draw, met already labelled): on
    PostgreSQL one INSERT of an array of keys, not a row of parameters per post."""
    if not refs:
        return
    shared = {"strategy": strategy, "source": scope.source, "since": scope.since}
    shared |= {"until": scope.until, "drawn_at": at}
    if dialect_name(session) == "postgresql":
        await session.execute(_RECORD, {"refs": list(refs)} | shared)
    else:
        await session.execute(insert(_DRAWS), [{"post_ref": ref} | shared for ref in refs])


_RECORD = insert(_DRAWS).from_select(
    ["post_ref", "strategy", "source", "since", "until", "drawn_at"],
    select(
        func.unnest(bindparam("refs", type_=ARRAY(BigInteger))),
        bindparam("strategy", type_=_DRAWS.c.strategy.type),
        bindparam("source", type_=_DRAWS.c.source.type),
        bindparam("since", type_=_DRAWS.c.since.type),
        bindparam("until", type_=_DRAWS.c.until.type),
        bindparam("drawn_at", type_=_DRAWS.c.drawn_at.type),
    ),
)


class Skip(StrEnum):
    SKIPPED = "skipped"
    NOT_DRAWN = "not drawn"
    NO_POST = "no post"


_REF = select(SocialMediaPost.id).where(SocialMediaPost.post_id == bindparam("key"))


async def skip_post(session: AsyncSession, post_id: str, at: datetime) -> Skip:
    """Mark the post's draws skipped (a post skipped before stays skipped as it was)."""
    ref = (await session.execute(_REF, {"key": post_id})).scalar()
    if ref is None:
        return Skip.NO_POST
    draws = _DRAWS.c
    marked = await session.execute(
        update(_DRAWS)
        .where(draws.post_ref == ref, draws.skipped_at.is_(None))
        .values(skipped_at=at)
        .returning(draws.id)
    )
    if marked.first() is not None:
        return Skip.SKIPPED
    drawn = await session.execute(select(draws.id).where(draws.post_ref == ref).limit(1))
    return Skip.SKIPPED if drawn.first() is not None else Skip.NOT_DRAWN


async def items_by_refs(reader: Reader, refs: Sequence[int]) -> list[PostItem]:
    """The posts with these integer keys as post items, in the order asked (gone ones left
    out)."""
    if not refs:
        return []
    rows = await fetch_rows(reader, _items_statement(dialect_name(reader)), {"refs": list(refs)})
    by_ref = {row[0]: row for row in rows}
    return _items([by_ref[ref] for ref in refs if ref in by_ref], _api_stamp_of)


@cache
def _items_statement(dialect: str) -> Any:
    if dialect == "postgresql":
        return _ITEM_QUERY.where(
            SocialMediaPost.id == any_(bindparam("refs", type_=ARRAY(BigInteger)))
        )
    return _ITEM_QUERY.where(SocialMediaPost.id.in_(bindparam("refs", expanding=True)))
