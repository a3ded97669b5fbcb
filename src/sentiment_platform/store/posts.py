"""Posts and their analyses: idempotent batch writes (with their rollup counts) and the pages.
The caller owns the transaction."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, literal_column, select, tuple_, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.domain import Analysis, Emotion, Post, PostView, Sentiment, utcnow
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost
from sentiment_platform.store import rollups

SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]  # any select, kept as is

TEXT_COUNT_CAP = 1_000  # a text search counts its matches up to this, then says "capped"
MIN_TEXT = 3  # a trigram index needs three characters (shorter: refused by the API)


async def save_batch(
    session: AsyncSession, posts: Sequence[Post], analyses: Sequence[Analysis]
) -> set[str]:
    """Insert posts and their analyses; a post_id seen before is skipped, never duplicated.
    The rollups gain exactly what this call inserted, in the same transaction.

    Returns the post_ids whose analyses this call stored (a redelivered batch: none), so
    only those are counted and announced. An analysis whose post is not stored is an
    IntegrityError (a row error: the worker dead-letters it).
    """
    by_post = {analysis.post_id: analysis for analysis in analyses}
    # (id, created_at, source) of the posts this call inserted; labelled at insert when
    # their analysis comes with them (the worker's case: no UPDATE needed).
    new: dict[str, tuple[int, datetime, str]] = {}
    if posts:
        ingested_at = utcnow()
        rows = []
        for post in posts:
            row = post.model_dump() | {"ingested_at": ingested_at}
            analysis = by_post.get(post.post_id)
            if analysis is not None:
                row |= _labels(analysis)
            else:
                row |= {"sentiment": None, "emotion": None, "analyzed_at": None}
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
            deltas[(minute, source, analysis.sentiment.value, analysis.emotion.value)] += 1
            if post_id not in new:  # counted as unanalysed when it was stored
                deltas[(minute, source, rollups.UNANALYSED, rollups.UNANALYSED)] -= 1
    for post_id, (_, created_at, source) in new.items():
        if post_id not in stored:
            unanalysed = (rollups.UNANALYSED, rollups.UNANALYSED)
            deltas[(rollups.floor("m", created_at), source, *unanalysed)] += 1
    await rollups.add(session, deltas)
    return stored


# A shallow row per analysis: `dataclasses.asdict` deep-copies every value, which was a third
# of the worker's time per batch.
_ANALYSIS_COLUMNS = tuple(field.name for field in fields(Analysis) if field.name != "post_id")


def _labels(analysis: Analysis) -> dict[str, Any]:
    return {
        "sentiment": analysis.sentiment.value,
        "emotion": analysis.emotion.value,
        "analyzed_at": analysis.analyzed_at,
    }


async def _label_older(session: AsyncSession, pairs: list[tuple[int, Analysis]]) -> None:
    """Copy the labels onto posts stored before their analysis came."""
    posts: Any = SocialMediaPost.__table__
    statement = (
        update(posts)
        .where(posts.c.id == bindparam("ref"))
        .values(sentiment=bindparam("s"), emotion=bindparam("e"), analyzed_at=bindparam("a"))
    )
    params = [
        {"ref": ref, "s": a.sentiment.value, "e": a.emotion.value, "a": a.analyzed_at}
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
    if session.get_bind().dialect.name == "postgresql":
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
    cursor: tuple[datetime, int] | None = None  # continue after this (created_at, id)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[PostView]
    total: int
    total_capped: bool  # True: `total` is a lower bound (a text search counted up to a cap)
    next_cursor: str | None  # None: this is the last page


def encode_cursor(created_at: datetime, ref: int) -> str:
    raw = f"{created_at.isoformat()}|{ref}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """ValueError when it is not a cursor this API gave out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, ref = raw.partition("|")
        created_at = datetime.fromisoformat(moment)
        number = int(ref)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor from a previous page's next_cursor") from None
    if created_at.tzinfo is None or number < 0 or number >= 2**63:
        raise ValueError("not a cursor from a previous page's next_cursor")
    return created_at, number


async def list_posts(
    session: AsyncSession, where: PostFilter, retained_since: datetime | None = None
) -> Page:
    """A page of posts, newest first, how many match in all, and the next page's cursor.

    The page walks the index matching its filter (`(filter, created_at DESC, id DESC)`) and
    stops after `limit` + 1 rows. `total` comes from the rollups (plus the partial minutes
    at the edges of a range, counted on the index) — except for a text search, which counts
    its matches up to TEXT_COUNT_CAP. `retained_since` (RETENTION_DAYS) keeps the rollups'
    older counts, whose posts are deleted, out of the total.
    """
    query = _filtered(_ITEM_QUERY, session, where)
    if where.cursor is not None:
        query = query.where(
            tuple_(SocialMediaPost.created_at, SocialMediaPost.id) < tuple_(*where.cursor)
        )
    page = query.order_by(SocialMediaPost.created_at.desc(), SocialMediaPost.id.desc())
    page = page.limit(where.limit + 1).offset(where.offset)
    rows = (await (await session.connection()).execute(page)).all()  # Core rows: no ORM layer
    more = len(rows) > where.limit
    rows = rows[: where.limit]
    next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    if where.text:
        total, capped = await _capped_count(session, where)
    else:
        total, capped = await _total(session, where, retained_since), False
    return Page([_view(row) for row in rows], total, capped, next_cursor)


async def _capped_count(session: AsyncSession, where: PostFilter) -> tuple[int, bool]:
    matches = _filtered(select(SocialMediaPost.id), session, where).limit(TEXT_COUNT_CAP + 1)
    found = (
        await session.execute(select(func.count()).select_from(matches.subquery()))
    ).scalar_one()
    return min(found, TEXT_COUNT_CAP), found > TEXT_COUNT_CAP


async def _total(session: AsyncSession, where: PostFilter, retained_since: datetime | None) -> int:
    """Whole minutes from the rollups, the partial minutes at either edge on the index."""
    since = where.since
    if retained_since is not None and (since is None or since < retained_since):
        since = rollups.floor("m", retained_since)
    until = where.until
    inner_since = rollups.ceil("m", since) if since is not None else None
    inner_until = rollups.floor("m", until) if until is not None else None
    if inner_since is not None and inner_until is not None and inner_since >= inner_until:
        return await _count_between(session, where, since, until)  # under two minutes
    labels = {
        "source": where.source,
        "sentiment": where.sentiment.value if where.sentiment else None,
        "emotion": where.emotion.value if where.emotion else None,
    }
    counted = await rollups.total(session, inner_since, inner_until, **labels)
    if since is not None and inner_since is not None and since < inner_since:
        counted += await _count_between(session, where, since, inner_since)
    if until is not None and inner_until is not None and inner_until < until:
        counted += await _count_between(session, where, inner_until, until)
    return counted


async def _count_between(
    session: AsyncSession, where: PostFilter, since: datetime | None, until: datetime | None
) -> int:
    edge = PostFilter(
        sentiment=where.sentiment,
        emotion=where.emotion,
        source=where.source,
        since=since,
        until=until,
    )
    query = _filtered(select(func.count()).select_from(SocialMediaPost), session, edge)
    return int((await session.execute(query)).scalar_one())


def _filtered(query: SelectT, session: AsyncSession, where: PostFilter) -> SelectT:
    if where.sentiment is not None:
        query = query.where(SocialMediaPost.sentiment == where.sentiment.value)
    if where.emotion is not None:
        query = query.where(SocialMediaPost.emotion == where.emotion.value)
    if where.source is not None:
        query = query.where(SocialMediaPost.source == where.source)
    if where.since is not None:
        query = query.where(SocialMediaPost.created_at >= where.since)
    if where.until is not None:
        query = query.where(SocialMediaPost.created_at < where.until)
    if where.text:
        query = query.where(_text_match(session, where.text))
    return query


def _text_match(session: AsyncSession, text: str) -> Any:
    """Case-insensitive substring: `ILIKE` on PostgreSQL (served by the pg_trgm GIN index);
    the FTS5 trigram index on SQLite (a phrase of trigrams is a substring match)."""
    if session.get_bind().dialect.name == "sqlite" and len(text) >= MIN_TEXT:
        phrase = '"' + text.replace('"', '""') + '"'
        fts: Any = (
            select(literal_column("rowid"))
            .select_from(sql_text("posts_fts"))
            .where(sql_text("posts_fts MATCH :phrase").bindparams(phrase=phrase))
        )
        return SocialMediaPost.id.in_(fts)
    return SocialMediaPost.content.icontains(text, autoescape=True)


async def stream_posts(
    session: AsyncSession, where: PostFilter, chunk: int = 1_000
) -> AsyncIterator[PostView]:
    """Every matching post, newest first, through a server-side cursor (constant memory)."""
    query = _filtered(_ITEM_QUERY, session, where).order_by(
        SocialMediaPost.created_at.desc(), SocialMediaPost.id.desc()
    )
    result = await session.stream(query.execution_options(yield_per=chunk))
    async for row in result:
        yield _view(row)


# The item's columns, not ORM entities: building two mapped objects a row cost more than the
# rest of a page. The labels are read from the post row (the same as the analysis's).
_ITEM_QUERY = select(
    SocialMediaPost.id,
    SocialMediaPost.post_id,
    SocialMediaPost.source,
    SocialMediaPost.content,
    SocialMediaPost.author,
    SocialMediaPost.created_at,
    SocialMediaPost.sentiment,
    SentimentAnalysis.confidence,
    SocialMediaPost.emotion,
    SentimentAnalysis.emotion_confidence,
    SentimentAnalysis.model,
    SocialMediaPost.analyzed_at,
).outerjoin(SentimentAnalysis, SentimentAnalysis.post_ref == SocialMediaPost.id)


def _view(row: Any) -> PostView:
    return PostView.model_validate(row._asdict())  # a dict validates faster than a mapping
