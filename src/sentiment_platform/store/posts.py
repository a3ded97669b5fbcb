"""Posts and their analyses as rows: idempotent batch writes (with their rollup counts), the
posts an alert's explanation reads, and retention's deletes. The caller owns the transaction.
Pages, filters and totals are `post_pages`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import any_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import (
    UNSUPPORTED_LANGUAGE,
    Analysis,
    Post,
    PostMarks,
    PostView,
    Sentiment,
    utcnow,
)
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost
from sentiment_platform.store import labels, model_rollups, rollups
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows


async def save_batch(
    session: AsyncSession,
    posts: Sequence[Post],
    analyses: Sequence[Analysis],
    marks: Mapping[str, PostMarks] | None = None,
) -> set[str]:
    """Insert posts and their analyses; a post_id seen before is skipped, never duplicated.
    The rollups and the model rollups gain exactly what this call inserted, in the same
    transaction. `marks` (the worker's: language, copy, "unsupported_language") go on the
    rows this call inserts and key their rollup cells; a post marked unsupported has no
    analysis and is counted unanalysed under its language.

    Returns the post_ids this call settled: those whose analyses it stored, and the
    unsupported posts it inserted (a redelivered batch: none), so only those are counted
    and announced. An analysis whose post is not stored is an IntegrityError (a row error:
    the worker dead-letters it).
    """
    marks = marks or {}
    by_post = {analysis.post_id: analysis for analysis in analyses}
    # (id, created_at, source) of the posts this call inserted; labelled at insert when
    # their analysis comes with them (the worker's case: no UPDATE needed).
    new: dict[str, tuple[int, datetime, str]] = {}
    if posts:
        ingested_at = utcnow()
        labelled = any(post.label is not None for post in posts)
        rows = []
        for post in posts:
            row = post.model_dump() | {"ingested_at": ingested_at}
            analysis = by_post.get(post.post_id)
            if analysis is not None:
                row |= _copied(analysis)
            else:
                row |= dict.fromkeys(_ANALYSIS_COLUMNS)
            label = row.pop("label")
            if marks:  # columns every row of the INSERT has, or none does
                row |= _mark_columns(marks.get(post.post_id))
            if labelled:  # columns every row of the INSERT has, or none does
                at = analysis.analyzed_at if analysis is not None else ingested_at
                row |= labels.label_columns(label, at)
            rows.append(row)
        table = SocialMediaPost.__table__
        returned = await _insert_new(
            session,
            table,
            rows,
            "post_id",
            (table.c.post_id, table.c.id, table.c.created_at, table.c.source),
        )
        new = {post_id: (ref, created_at, source) for post_id, ref, created_at, source in returned}
    deltas: Counter[rollups.Key] = Counter()
    by_model: Counter[model_rollups.Key] = Counter()
    stored: set[str] = set()
    if analyses:
        refs = dict(new)
        older = [post_id for post_id in by_post if post_id not in new]
        if older:
            found = await session.execute(
                select(
                    SocialMediaPost.post_id,
                    SocialMediaPost.id,
                    SocialMediaPost.created_at,
                    SocialMediaPost.source,
                ).where(SocialMediaPost.post_id.in_(older))
            )
            refs |= {
                post_id: (ref, created_at, source) for post_id, ref, created_at, source in found
            }
        missing = [post_id for post_id in by_post if post_id not in refs]
        if missing:
            raise IntegrityError(
                "analysis for a post that is not stored",
                {"post_ids": missing[:5]},
                LookupError(f"no stored post {missing[0]!r}"),
            )
        post_of = {refs[post_id][0]: post_id for post_id in by_post}
        rows = [
            {name: getattr(a, name) for name in _ANALYSIS_COLUMNS}
            | {"post_ref": refs[a.post_id][0]}
            for a in by_post.values()
        ]
        table = SentimentAnalysis.__table__
        inserted = await _insert_new(session, table, rows, "post_ref", (table.c.post_ref,))
        stored = {post_of[ref] for (ref,) in inserted}
        relabel = [by_post[post_id] for post_id in stored if post_id not in new]
        if relabel:
            await _label_older(session, [(refs[a.post_id][0], a) for a in relabel])
        for post_id in stored:
            _, created_at, source = refs[post_id]
            analysis = by_post[post_id]
            minute = rollups.floor("m", created_at)
            # An older post kept the marks it was stored with (none): so do its cells.
            kind = _kind(marks.get(post_id) if post_id in new else None)
            deltas[(minute, source, analysis.sentiment.value, analysis.emotion.value, *kind)] += 1
            by_model[(minute, source, analysis.model)] += 1
            if post_id not in new:  # counted as unanalysed when it was stored
                deltas[(minute, source, rollups.UNANALYSED, rollups.UNANALYSED, *kind)] -= 1
    unsupported: set[str] = set()
    for post_id, (_, created_at, source) in new.items():
        if post_id not in stored:
            mark = marks.get(post_id)
            unanalysed = (rollups.UNANALYSED, rollups.UNANALYSED, *_kind(mark))
            deltas[(rollups.floor("m", created_at), source, *unanalysed)] += 1
            if mark is not None and mark.analysis == UNSUPPORTED_LANGUAGE:
                unsupported.add(post_id)
    await rollups.add(session, deltas)
    await model_rollups.add(session, by_model)
    return stored | unsupported


def _mark_columns(mark: PostMarks | None) -> dict[str, Any]:
    if mark is None:
        return {"language": None, "duplicate_of": None, "analysis": None}
    return {"language": mark.language, "duplicate_of": mark.duplicate_of, "analysis": mark.analysis}


def _kind(mark: PostMarks | None) -> tuple[str, bool]:
    """A post's rollup cell beyond its labels: (language, is a copy); '' before detection."""
    return ("", False) if mark is None else (mark.language, mark.duplicate_of is not None)


# A shallow row per analysis: `dataclasses.asdict` deep-copies every value, which was a third
# of the worker's time per batch. The post row copies the same columns.
_ANALYSIS_COLUMNS = tuple(field.name for field in fields(Analysis) if field.name != "post_id")


def _copied(analysis: Analysis) -> dict[str, Any]:
    row = {name: getattr(analysis, name) for name in _ANALYSIS_COLUMNS}
    row["sentiment"], row["emotion"] = analysis.sentiment.value, analysis.emotion.value
    return row


async def _label_older(session: AsyncSession, pairs: list[tuple[int, Analysis]]) -> None:
    """Copy the analyses onto posts stored before their analysis came."""
    posts: Any = SocialMediaPost.__table__
    statement = (
        update(posts)
        .where(posts.c.id == bindparam("ref"))
        .values({name: bindparam(f"new_{name}") for name in _ANALYSIS_COLUMNS})
    )
    params = [
        {"ref": ref} | {f"new_{name}": value for name, value in _copied(a).items()}
        for ref, a in sorted(pairs, key=lambda pair: pair[0])
    ]
    await session.execute(statement.execution_options(synchronize_session=False), params)


async def _insert_new(
    session: AsyncSession, table: Any, rows: list[dict[str, Any]], key: str, returning: Any
) -> list[Any]:
    """INSERT … ON CONFLICT (key) DO NOTHING; returns the `returning` columns of new rows.

    PostgreSQL gets one statement with one array per column (`SELECT unnest(…), …`): a
    statement with a parameter per value cost the worker more than the rest of its batch.
    """
    columns = list(rows[0])
    if dialect_name(session) == "postgresql":
        arrays = select(
            *(func.unnest(bindparam(name, type_=ARRAY(table.c[name].type))) for name in columns)
        )
        statement: Any = (
            postgresql.insert(table)
            .from_select(columns, arrays)
            .on_conflict_do_nothing(index_elements=[key])
            .returning(*returning)
        )
        params: Any = {name: [row[name] for row in rows] for name in columns}
    else:
        statement = (
            sqlite.insert(table).on_conflict_do_nothing(index_elements=[key]).returning(*returning)
        )
        params = rows
    return list((await session.execute(statement, params)).all())


async def stored_post_ids(reader: Reader, post_ids: Sequence[str]) -> set[str]:
    """Which of these post_ids the store holds: one read of the unique post_id index (on
    PostgreSQL `= ANY` of one array parameter, so one prepared statement serves any count)."""
    if not post_ids:
        return set()
    statement = _stored_statement(dialect_name(reader))
    rows = await fetch_rows(reader, statement, {"ids": list(post_ids)})
    return {post_id for (post_id,) in rows}


@cache
def _stored_statement(dialect: str) -> Any:
    post_id = SocialMediaPost.post_id
    if dialect == "postgresql":
        return select(post_id).where(post_id == any_(bindparam("ids", type_=ARRAY(post_id.type))))
    return select(post_id).where(post_id.in_(bindparam("ids", expanding=True)))


async def posts_by_ids(session: AsyncSession, post_ids: Sequence[str]) -> list[PostView]:
    """The posts with these ids (with their analyses), in the order asked; missing ones left
    out (retention may have removed them)."""
    if not post_ids:
        return []
    rows = await session.execute(
        select(SocialMediaPost, SentimentAnalysis)
        .outerjoin(SentimentAnalysis, SentimentAnalysis.post_ref == SocialMediaPost.id)
        .where(SocialMediaPost.post_id.in_(list(post_ids)))
    )
    found = {
        post.post_id: PostView.of(post, analysis, labels.view_of(post)) for post, analysis in rows
    }
    return [found[post_id] for post_id in post_ids if post_id in found]


def _like(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def rule_posts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    keywords: Sequence[str],
    source: str | None,
    negative_only: bool,
    limit: int,
    language: str | None = None,
    unique: bool = False,
) -> list[tuple[str, str, str]]:
    """(post_id, content, source) of posts analysed in [start, end) that may match a rule,
    newest first, at most `limit`: a keyword pre-filter (ILIKE) the caller narrows to whole
    words with the matcher; of one language, and without copies when `unique`, as the rule
    counts them."""
    query = (
        select(SocialMediaPost.post_id, SocialMediaPost.content, SocialMediaPost.source)
        .join(SentimentAnalysis, SentimentAnalysis.post_ref == SocialMediaPost.id)
        .where(SentimentAnalysis.analyzed_at >= start, SentimentAnalysis.analyzed_at < end)
    )
    if negative_only:
        query = query.where(SentimentAnalysis.sentiment == Sentiment.NEGATIVE.value)
    if source is not None:
        query = query.where(SocialMediaPost.source == source)
    if language is not None:
        query = query.where(SocialMediaPost.language == language)
    if unique:
        query = query.where(SocialMediaPost.duplicate_of.is_(None))
    if keywords:
        query = query.where(
            or_(*(SocialMediaPost.content.ilike(_like(k), escape="\\") for k in keywords))
        )
    rows = await session.execute(query.order_by(SentimentAnalysis.analyzed_at.desc()).limit(limit))
    return [(post_id, content, source_) for post_id, content, source_ in rows]


_NEWEST_MODEL = (
    select(SentimentAnalysis.model).order_by(SentimentAnalysis.analyzed_at.desc()).limit(1)
)


async def newest_model(reader: Reader) -> str | None:
    """The model of the newest analysis (on its `analyzed_at` index): the one scoring posts
    now, as far as the store can tell. None: nothing analysed."""
    rows = await fetch_rows(reader, _NEWEST_MODEL, {})
    return str(rows[0][0]) if rows else None


async def any_posts(session: AsyncSession) -> bool:
    """Whether the store holds a post at all."""
    return await session.scalar(select(SocialMediaPost.id).limit(1)) is not None


async def delete_posts_before(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest unlabelled posts created before `cutoff` (their
    analyses go by cascade); how many went. Bounded, so no statement holds its locks for
    long. A labelled post is kept: a person's label is not ours to throw away."""
    oldest = (
        select(SocialMediaPost.id)
        .where(SocialMediaPost.created_at < cutoff, SocialMediaPost.label_sentiment.is_(None))
        .order_by(SocialMediaPost.created_at)
        .limit(limit)
    )
    result: Any = await session.execute(
        delete(SocialMediaPost).where(SocialMediaPost.id.in_(oldest))
    )
    return int(result.rowcount or 0)
