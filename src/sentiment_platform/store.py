"""Reads and idempotent batch writes over the models. The caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import Analysis, Emotion, Post, PostView, Sentiment, utcnow
from sentiment_platform.models.database import Alert, SentimentAnalysis, SocialMediaPost


async def save_batch(
    session: AsyncSession, posts: Sequence[Post], analyses: Sequence[Analysis]
) -> int:
    """Insert posts and their analyses; a post_id seen before is skipped, never duplicated.

    Returns how many analyses were newly stored (a redelivered batch returns 0).
    """
    if posts:
        ingested_at = utcnow()
        await session.execute(
            _insert_ignoring_duplicates(session, SocialMediaPost, "post_id"),
            [post.model_dump() | {"ingested_at": ingested_at} for post in posts],
        )
    if not analyses:
        return 0
    result = await session.execute(
        _insert_ignoring_duplicates(session, SentimentAnalysis, "post_id").returning(
            SentimentAnalysis.__table__.c.post_id
        ),
        [{name: getattr(analysis, name) for name in _ANALYSIS_COLUMNS} for analysis in analyses],
    )
    return len(result.all())


# A shallow row per analysis: `dataclasses.asdict` deep-copies every value, which was a third
# of the worker's time per batch.
_ANALYSIS_COLUMNS = tuple(field.name for field in fields(Analysis))


def _insert_ignoring_duplicates(session: AsyncSession, model: Any, key: str) -> Any:
    """A Core INSERT on the model's table: the ORM bulk path costs more per row than the rest
    of the worker's batch handling together."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model.__table__).on_conflict_do_nothing(index_elements=[key])


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
    count_query = _filtered_posts(
        select(func.count()).select_from(SocialMediaPost).outerjoin(SocialMediaPost.analysis),
        where,
    )
    total = (await session.execute(count_query)).scalar_one()
    return [PostView.of(post, analysis) for post, analysis in rows], total


def _filtered_posts(query: Select[Any], where: PostFilter) -> Select[Any]:
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


async def list_alerts(
    session: AsyncSession, limit: int, since: datetime | None = None
) -> tuple[list[Alert], int]:
    """Alerts newest first, and how many match in all."""
    query = select(Alert)
    count_query = select(func.count()).select_from(Alert)
    if since is not None:
        query = query.where(Alert.created_at >= since)
        count_query = count_query.where(Alert.created_at >= since)
    rows = await session.scalars(
        query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    )
    return list(rows), (await session.execute(count_query)).scalar_one()
