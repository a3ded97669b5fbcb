"""Bulk export of posts as CSV or JSON Lines, streamed in constant memory.

The rows come as keyset pages (`store.post_pages.stream_posts`), a thousand at a time, each an
index walk that stops at its thousand, and leave as encoded chunks; nothing holds the whole
export. Both `GET
/api/posts/export` and `sentiment-platform export` run this.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Literal

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.domain import PostView
from sentiment_platform.store import rollups
from sentiment_platform.store.post_pages import PostFilter, stream_posts

Format = Literal["csv", "jsonl"]
COLUMNS = tuple(PostView.model_fields)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CHUNK_ROWS = 1_000


class ExportTooLarge(ValueError):
    """An export without a time range over EXPORT_MAX_ROWS."""


async def check_size(session: AsyncSession, where: PostFilter, max_rows: int) -> int:
    """How many posts the export holds (from the rollups; a text search: at most that);
    ExportTooLarge when there is no time range and it is over `max_rows`."""
    rows = await rollups.total(
        session,
        where.since,
        where.until,
        source=where.source,
        sentiment=where.sentiment.value if where.sentiment else None,
        emotion=where.emotion.value if where.emotion else None,
    )
    if where.since is None and where.until is None and rows > max_rows:
        raise ExportTooLarge(
            f"the export would hold about {rows} posts, over EXPORT_MAX_ROWS ({max_rows}); "
            "give since/until to export a time range (any size), or raise EXPORT_MAX_ROWS"
        )
    return rows


async def export_chunks(
    session_factory: async_sessionmaker[AsyncSession],
    where: PostFilter,
    fmt: Format,
    progress: list[int] | None = None,
) -> AsyncIterator[bytes]:
    """The export, chunk by chunk (a header first for CSV). `progress[0]` counts rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    parts: list[bytes] = []
    if fmt == "csv":
        writer.writerow(COLUMNS)
        parts.append(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    rows = 0
    async with session_factory() as session, session.begin():
        await rollups.no_statement_timeout(session)  # the stream may take minutes
        async for post in stream_posts(session, where, CHUNK_ROWS):
            if fmt == "csv":
                writer.writerow([post[name] for name in COLUMNS])
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


def _flush(parts: list[bytes], buffer: io.StringIO) -> bytes:
    if buffer.tell():
        parts.append(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    chunk = b"".join(parts)
    parts.clear()
    return chunk
