"""Bulk export of posts as CSV or JSON Lines, streamed in constant memory.

The rows come as keyset pages (`store.post_pages.stream_posts`), a thousand at a time, each an
index walk that stops at its thousand, and leave as encoded chunks; nothing holds the whole
export. Both `GET /api/posts/export` (capped by `row_cap` without a time range) and
`sentiment-platform export` run this.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.domain import PostView
from sentiment_platform.store import rollup_reads, rollups
from sentiment_platform.store.post_pages import PostFilter, count_matches, stream_posts
from sentiment_platform.store.prepared import Reader

Format = Literal["csv", "jsonl"]
# CSV is flat: a label is its sentiment in `label` (the column `ingest file` reads back),
# its emotion and time beside it; JSON Lines carry the item's `label` object as it is.
FIELDS = tuple(name for name in PostView.model_fields if name != "label")
COLUMNS = (*FIELDS, "label", "label_emotion", "labelled_at")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CHUNK_ROWS = 1_000


class ExportTooLarge(ValueError):
    """An export without a time range over EXPORT_MAX_ROWS."""


# OWASP's CSV injection starts: a cell beginning with one of these is a formula to a
# spreadsheet (`=HYPERLINK(…)`, `@SUM(…)`, `+cmd|…`), or is trimmed into one (tab, CR).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutral(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a leading single quote before a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


async def row_cap(
    reader: Reader, where: PostFilter, max_rows: int, retained_since: datetime | None = None
) -> int | None:
    """The most rows the export may stream: None with a time range (any size), else
    `max_rows`, and ExportTooLarge when more posts than that match now.

    Counted as a page's total is: from the rollups, which are exact, from RETENTION_DAYS's
    cutoff on (`retained_since`: the rollups keep the counts of deleted posts, which must
    not refuse an export); a text search, which the rollups cannot count, on the index, up
    to one past the cap. The stream stops at the cap too, so posts stored while it runs
    cannot carry it past."""
    if where.since is not None or where.until is not None:
        return None
    rows, capped = await count_matches(reader, where, retained_since, text_cap=max_rows)
    if capped or rows > max_rows:
        about = f"more than {max_rows}" if capped else str(rows)
        raise ExportTooLarge(
            f"the export would hold {about} posts, over EXPORT_MAX_ROWS ({max_rows}); "
            "give since/until to export a time range (any size), or raise EXPORT_MAX_ROWS"
        )
    return max_rows


async def expected_rows(session: AsyncSession, where: PostFilter) -> int:
    """About how many posts the export holds, for a progress bar (from the rollups; a
    text search: at most that)."""
    return await rollup_reads.total(
        session,
        where.since,
        where.until,
        source=where.source,
        sentiment=where.sentiment.value if where.sentiment else None,
        emotion=where.emotion.value if where.emotion else None,
        language=where.language,
    )


async def export_chunks(
    session_factory: async_sessionmaker[AsyncSession],
    where: PostFilter,
    fmt: Format,
    progress: list[int] | None = None,
    max_rows: int | None = None,
) -> AsyncIterator[bytes]:
    """The export, chunk by chunk (a header first for CSV), at most `max_rows` rows (None:
    all). `progress[0]` counts rows. CSV cells that a spreadsheet would run as a formula
    are `neutral`; JSON Lines carry the values as they are."""
    buffer = io.StringIO()
    # RFC 4180's CRLF: the writer quotes a cell holding any character of its line end, so
    # with "\n" alone a post's bare carriage return went out unquoted and began a new row.
    writer = csv.writer(buffer, lineterminator="\r\n")
    parts: list[bytes] = []
    if fmt == "csv":
        writer.writerow(COLUMNS)
        parts.append(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    rows = 0
    async with session_factory() as session, session.begin():
        await rollups.no_statement_timeout(session)  # the stream may take minutes
        async with aclosing(stream_posts(session, where, CHUNK_ROWS)) as posts:
            async for post in posts:
                if rows == max_rows:
                    break
                if fmt == "csv":
                    writer.writerow([neutral(post[name]) for name in FIELDS] + _flat(post["label"]))
                else:
                    parts.append(orjson.dumps(post, option=orjson.OPT_UTC_Z) + b"\n")
                rows += 1
                if rows % CHUNK_ROWS == 0:
                    if progress is not None:
                        progress[0] = rows
                    yield _flush(parts, buffer)
    if progress is not None:
        progress[0] = rows
    tail = _flush(parts, buffer)
    if tail:
        yield tail


def _flat(label: dict[str, str | None] | None) -> list[str | None]:
    if label is None:
        return [None, None, None]
    return [label["sentiment"], label["emotion"], label["labelled_at"]]


def _flush(parts: list[bytes], buffer: io.StringIO) -> bytes:
    if buffer.tell():
        parts.append(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    chunk = b"".join(parts)
    parts.clear()
    return chunk
