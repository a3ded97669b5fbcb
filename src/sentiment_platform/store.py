"""Reads and idempotent batch writes over the models. The caller owns the transaction.

Also the alert monitor's SQL: the window count, the open incident, and its row's writes.
"""

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
from sentiment_platform.models.database import Alert, SentimentAnalysis, SocialMediaPost

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


# --- the alert monitor's SQL ---------------------------------------------------------------

FIRING = "firing"  # Alert.state of an open incident: at most one per alert_type (unique index)


async def count_window(session: AsyncSession, start: datetime, end: datetime) -> dict[str, int]:
    """Posts ANALYSED in [start, end), per sentiment label: one grouped count, no join.

    By `analyzed_at`, not `created_at`: a backlog older than the window is counted when the
    workers reach it, so it cannot hide a spike (index `ix_analysis_analyzed_at`).
    """
    rows = await session.execute(
        select(SentimentAnalysis.sentiment, func.count())
        .where(SentimentAnalysis.analyzed_at >= start, SentimentAnalysis.analyzed_at < end)
        .group_by(SentimentAnalysis.sentiment)
    )
    return {label: count for label, count in rows}


async def firing_alert(session: AsyncSession, alert_type: str) -> Alert | None:
    """The open (firing) incident of this type, if any."""
    return await session.scalar(
        select(Alert)
        .where(Alert.alert_type == alert_type, Alert.state == FIRING)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(1)
    )


async def insert_firing_alert(
    session: AsyncSession,
    *,
    alert_type: str,
    severity: str,
    message: str,
    details: dict[str, Any],
    created_at: datetime,
) -> Alert | None:
    """Open an incident: INSERT … ON CONFLICT DO NOTHING on the one-firing-row index.

    Returns the new row, or None when another monitor's firing row of this type already
    exists (the database, not the lease, is what keeps one open incident per type).
    """
    values = {
        "alert_type": alert_type,
        "severity": severity,
        "state": FIRING,
        "message": message,
        "details": details,
        "created_at": created_at,
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Alert)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=[Alert.alert_type], index_where=Alert.state == FIRING
        )  # the partial index `ux_alerts_one_firing`, and no other conflict
        .returning(Alert)
    )
    inserted: Alert | None = await session.scalar(statement)
    return inserted


async def update_alert(session: AsyncSession, alert_id: int, **values: Any) -> Alert | None:
    """Set columns of one alert row; `details` is merged into what the row holds.

    Returns the updated row, or None when it is gone.
    """
    alert = await session.get(Alert, alert_id)
    if alert is None:
        return None
    if "details" in values:
        values["details"] = (alert.details or {}) | values["details"]
    for name, value in values.items():
        setattr(alert, name, value)
    await session.flush()
    return alert
