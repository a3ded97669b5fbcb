"""Posts and their analyses: idempotent batch writes and the paged reads. The caller owns
the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import Analysis, Emotion, Post, PostView, Sentiment, utcnow
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost

SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]  # any select, kept as is


async def save_batch(
    session: AsyncSession, posts: Sequence[Post], analyses: Sequence[Analysis]
) -> set[str]:
    """Insert posts and their analyses; a post_id seen before is skipped, never duplicated.

    Returns the post_ids whose analyses this call stored (a redelivered batch: none), so
    only those are counted and announced.
    """
    if posts:
        ingested_at = utcnow()
        await _insert_new(
            session,
            SocialMediaPost,
            [post.model_dump() | {"ingested_at": ingested_at} for post in posts],
        )
    if not analyses:
        return set()
    rows = [{name: getattr(analysis, name) for name in _ANALYSIS_COLUMNS} for analysis in analyses]
    return set(await _insert_new(session, SentimentAnalysis, rows))


# A shallow row per analysis: `dataclasses.asdict` deep-copies every value, which was a third
# of the worker's time per batch.
_ANALYSIS_COLUMNS = tuple(field.name for field in fields(Analysis))


async def _insert_new(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> list[str]:
    """INSERT … ON CONFLICT (post_id) DO NOTHING; returns the post_ids actually inserted.

    PostgreSQL gets one statement with one array per column (`SELECT unnest(…), …`): a
    statement with a parameter per value cost the worker more than the rest of its batch.
    """
    table = model.__table__
    columns = list(rows[0])
    if session.get_bind().dialect.name == "postgresql":
        arrays = select(
            *(func.unnest(bindparam(name, type_=ARRAY(table.c[name].type))) for name in columns)
        )
        statement = (
            postgresql.insert(table)
            .from_select(columns, arrays)
            .on_conflict_do_nothing(index_elements=["post_id"])
            .returning(table.c.post_id)
        )
        params: Any = {name: [row[name] for row in rows] for name in columns}
    else:
        statement = (
            sqlite.insert(table)
            .on_conflict_do_nothing(index_elements=["post_id"])
            .returning(table.c.post_id)
        )
        params = rows
    return list((await session.execute(statement, params)).scalars())


@dataclass(frozen=True, slots=True)
class PostFilter:
    limit: int = 50
    offset: int = 0
    sentiment: Sentiment | None = None
    emotion: Emotion | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None


async def list_posts(session: AsyncSession, where: PostFilter) -> tuple[list[PostView], int]:
    """A page of posts, newest first, and how many match in all."""
    query = _filtered_posts(
        select(SocialMediaPost, SentimentAnalysis).outerjoin(SocialMediaPost.analysis), where
    )
    page = query.order_by(SocialMediaPost.created_at.desc(), SocialMediaPost.id.desc())
    rows = (await session.execute(page.limit(where.limit).offset(where.offset))).all()
    counted = select(func.count()).select_from(SocialMediaPost)
    if where.sentiment is not None or where.emotion is not None:
        counted = counted.join(SocialMediaPost.analysis)  # only then is the join needed
    count_query = _filtered_posts(counted, where)
    total = (await session.execute(count_query)).scalar_one()
    return [PostView.of(post, analysis) for post, analysis in rows], total


def _filtered_posts(query: SelectT, where: PostFilter) -> SelectT:
    if where.sentiment is not None:
        query = query.where(SentimentAnalysis.sentiment == where.sentiment.value)
    if where.emotion is not None:
        query = query.where(SentimentAnalysis.emotion == where.emotion.value)
    if where.source is not None:
        query = query.where(SocialMediaPost.source == where.source)
    if where.since is not None:
        query = query.where(SocialMediaPost.created_at >= where.since)
    if where.until is not None:
        query = query.where(SocialMediaPost.created_at < where.until)
    if where.text:
        query = query.where(SocialMediaPost.content.icontains(where.text, autoescape=True))
    return query
