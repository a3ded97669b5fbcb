"""Reading posts as the API pages them: filters, keyset cursors, pages, totals and the export's
stream. Every read takes a `Reader` (a session, or a bare connection)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Select, Text, bindparam, cast, func, literal_column, select, tuple_
from sqlalchemy import text as sql_text

from sentiment_platform.domain import Emotion, Sentiment
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.store import rollup_reads, rollups
from sentiment_platform.store.post_items import (
    _ITEM_QUERY,
    _TEXT_STAMPS,
    PostItem,
    _api_stamp,
    _api_stamp_of,
    _items,
)
from sentiment_platform.store.prepared import Reader, dialect_name, fetch_rows

SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]  # any select, kept as is

TEXT_COUNT_CAP = 1_000  # a text search counts its matches up to this, then says "capped"
MIN_TEXT = 3  # a trigram index needs three characters (shorter: refused by the API)


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
    language: str | None = None  # ISO 639-1 or "und"


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


async def posts_page(reader: Reader, where: PostFilter) -> tuple[list[PostItem], str | None]:
    """A page of posts, newest first, and the next page's cursor (None: the last page).

    The page walks the index matching its filter (`(filter, created_at DESC, id DESC)`) and
    stops after `limit` + 1 rows. Items are plain dicts shaped as `PostView`: the columns are
    typed by the table, and validating 50 models a page cost more than the query.
    """
    items, last = await _page(reader, where)
    return items, (encode_cursor(*last) if last is not None else None)


async def _page(
    reader: Reader, where: PostFilter
) -> tuple[list[PostItem], tuple[datetime, int] | None]:
    """The page's items, and the (created_at, id) to continue after (None: the last page)."""
    dialect = dialect_name(reader)
    statement = _page_statement(dialect, _shape(where))
    rows = await fetch_rows(reader, statement, _params(where))
    stamp = _api_stamp if dialect == "postgresql" else _api_stamp_of
    items = _items(rows[: where.limit], stamp)
    if len(rows) <= where.limit:
        return items, None
    last = (datetime.fromisoformat(items[-1]["created_at"]), rows[where.limit - 1][0])
    if where.cursor is not None and last >= where.cursor:
        # A cursor that would not move down: an instant past 9999 that raw SQL stored reads
        # as the last one, which binds as `infinity` and finds it again. End the walk.
        return items, None
    return items, last


async def count_matches(
    reader: Reader,
    where: PostFilter,
    retained_since: datetime | None = None,
    text_cap: int | None = None,
) -> tuple[int, bool]:
    """How many posts match, and whether that is capped: exact from the rollups (plus the
    partial minutes at the edges of a range, counted on the index) — except for a text
    search, which counts its matches up to `text_cap` (None: TEXT_COUNT_CAP).
    `retained_since` (RETENTION_DAYS) keeps the rollups' older counts, whose posts are
    deleted, out of it."""
    if where.text:
        cap = TEXT_COUNT_CAP if text_cap is None else text_cap
        found = await _count(reader, where, cap + 1)
        return min(found, cap), found > cap
    return await _total(reader, where, retained_since), False


async def _total(reader: Reader, where: PostFilter, retained_since: datetime | None) -> int:
    """Whole minutes from the rollups, the partial minutes at either edge on the index."""
    since = where.since
    if retained_since is not None and (since is None or since < retained_since):
        since = rollups.floor("m", retained_since)
    until = where.until
    inner_since = rollups.ceil("m", since) if since is not None else None
    inner_until = rollups.floor("m", until) if until is not None else None
    if inner_since is not None and inner_until is not None and inner_since >= inner_until:
        return await _count_between(reader, where, since, until)  # under two minutes
    labels = {
        "source": where.source,
        "sentiment": where.sentiment.value if where.sentiment else None,
        "emotion": where.emotion.value if where.emotion else None,
    }
    counted = await rollup_reads.total(
        reader, inner_since, inner_until, language=where.language, **labels
    )
    if since is not None and inner_since is not None and since < inner_since:
        counted += await _count_between(reader, where, since, inner_since)
    if until is not None and inner_until is not None and inner_until < until:
        counted += await _count_between(reader, where, inner_until, until)
    return counted


async def _count_between(
    reader: Reader, where: PostFilter, since: datetime | None, until: datetime | None
) -> int:
    edge = PostFilter(
        sentiment=where.sentiment,
        emotion=where.emotion,
        source=where.source,
        since=since,
        until=until,
        language=where.language,
    )
    return await _count(reader, edge)


async def _count(reader: Reader, where: PostFilter, cap: int | None = None) -> int:
    statement = _count_statement(dialect_name(reader), _shape(where), cap is not None)
    params = _params(where) | ({"cap": cap} if cap is not None else {})
    [(counted,)] = await fetch_rows(reader, statement, params)
    return int(counted)


# --- statements, built once per shape -------------------------------------------------------
# A page's statement depends only on which filters are set (its shape) and the dialect; the
# values are bound parameters. Building a select per request cost more than running it.

# sentiment … until, the text search ("": none; "short": under MIN_TEXT), cursor, language
Shape = tuple[bool, bool, bool, bool, bool, str, bool, bool]


def _shape(where: PostFilter) -> Shape:
    return (
        where.sentiment is not None,
        where.emotion is not None,
        where.source is not None,
        where.since is not None,
        where.until is not None,
        ("short" if len(where.text) < MIN_TEXT else "indexed") if where.text else "",
        where.cursor is not None,
        where.language is not None,
    )


def _params(where: PostFilter) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": where.limit + 1, "offset": where.offset}
    if where.sentiment is not None:
        params["sentiment"] = where.sentiment.value
    if where.emotion is not None:
        params["emotion"] = where.emotion.value
    if where.source is not None:
        params["source"] = where.source
    if where.language is not None:
        params["language"] = where.language
    if where.since is not None:
        params["since"] = where.since
    if where.until is not None:
        params["until"] = where.until
    if where.text:
        params["phrase"] = '"' + where.text.replace('"', '""') + '"'  # an FTS5 phrase
        escaped = where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{escaped}%"  # ILIKE, the wildcards escaped
    if where.cursor is not None:
        params["cursor_at"], params["cursor_id"] = where.cursor
    return params


_NEWEST_FIRST = (SocialMediaPost.created_at.desc(), SocialMediaPost.id.desc())


@cache
def _page_statement(dialect: str, shape: Shape) -> Any:
    query = _filtered(_ITEM_QUERY, dialect, shape)
    if shape[6]:
        query = query.where(
            tuple_(SocialMediaPost.created_at, SocialMediaPost.id)
            < tuple_(
                bindparam("cursor_at", type_=SocialMediaPost.created_at.type),
                bindparam("cursor_id", type_=SocialMediaPost.id.type),
            )
        )
    page = query.order_by(*_NEWEST_FIRST).limit(bindparam("limit")).offset(bindparam("offset"))
    return _with_text_stamps(page) if dialect == "postgresql" else page


def _with_text_stamps(page: Select[Any]) -> Select[Any]:
    """The page's rows with their timestamps as text, for PostgreSQL: building a datetime per
    value is a large share of a page's decoding, while text is cheap to decode and to put in
    the API's form (`_api_stamp`). Cast outside the page, so the rows an `offset` skips are
    not cast too."""
    rows = page.subquery("page")
    columns = [
        cast(column, Text).label(column.name) if column.name in _TEXT_STAMPS else column
        for column in rows.c
    ]
    return select(*columns).order_by(rows.c.created_at.desc(), rows.c.id.desc())


@cache
def _count_statement(dialect: str, shape: Shape, capped: bool) -> Any:
    if not capped:
        return _filtered(select(func.count()).select_from(SocialMediaPost), dialect, shape)
    matches = _filtered(select(SocialMediaPost.id), dialect, shape).limit(bindparam("cap"))
    return select(func.count()).select_from(matches.subquery())


def _filtered(query: SelectT, dialect: str, shape: Shape) -> SelectT:
    sentiment, emotion, source, since, until, text, _, language = shape
    post = SocialMediaPost
    if sentiment:
        query = query.where(post.sentiment == bindparam("sentiment"))
    if emotion:
        query = query.where(post.emotion == bindparam("emotion"))
    if source:
        query = query.where(post.source == bindparam("source"))
    if language:
        query = query.where(post.language == bindparam("language"))
    if since:
        query = query.where(post.created_at >= bindparam("since", type_=post.created_at.type))
    if until:
        query = query.where(post.created_at < bindparam("until", type_=post.created_at.type))
    if text:
        query = query.where(_text_match(dialect, indexed=text == "indexed"))
    return query


def _text_match(dialect: str, indexed: bool) -> Any:
    """Case-insensitive substring: `ILIKE` on PostgreSQL (served by the pg_trgm GIN index);
    the FTS5 trigram index on SQLite (a phrase of trigrams is a substring match), which
    cannot match under MIN_TEXT characters: a shorter text (the CLI export allows one; the
    API refuses it) is a `LIKE` scan there."""
    if dialect == "sqlite" and indexed:
        fts: Any = (
            select(literal_column("rowid"))
            .select_from(sql_text("posts_fts"))
            .where(sql_text("posts_fts MATCH :phrase"))
        )
        return SocialMediaPost.id.in_(fts)
    return SocialMediaPost.content.ilike(bindparam("pattern"), escape="\\")


async def stream_posts(
    reader: Reader, where: PostFilter, chunk: int = 1_000
) -> AsyncGenerator[PostItem, None]:
    """Every matching post, newest first, as keyset pages of `chunk` (constant memory).

    Each page is the page statement: an index walk that stops at `chunk` rows, whatever the
    table holds, where a server-side cursor over the whole result is planned for its last
    row: a join and a sort over every post before the first row comes back.
    """
    page = replace(where, limit=chunk, offset=0, cursor=None)
    while True:
        items, last = await _page(reader, page)
        for item in items:
            yield item
        if last is None:
            return
        page = replace(page, cursor=last)
