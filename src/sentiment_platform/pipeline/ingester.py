"""The producers' plumbing behind `ingest demo`, `ingest file` and `serve --demo`, and the
file replay.

They publish to anything with the bus's `publish(posts)`: the bus itself (Redis mode, or
in-process for `serve --demo`) or `ApiPublisher`, which posts to a running API (how a
separate `ingest` process reaches the embedded in-process bus). The demo generator is in
`pipeline/demo.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import ValidationError
from redis.exceptions import RedisError

from sentiment_platform.config import Settings
from sentiment_platform.domain import MAX_BATCH_POSTS, Post
from sentiment_platform.errors import ServiceUnavailable
from sentiment_platform.retry import Backoff
from sentiment_platform.runtime import open_runtime

log = logging.getLogger(__name__)

SEND_BATCH = 500
RATE_LIMIT_RETRIES = 60
UNAVAILABLE_WAIT_S = 600.0  # how long a producer waits out 503s (a full backlog, an outage)
DEFAULT_MAX_BODY_BYTES: int = Settings.model_fields["max_body_bytes"].default
# A request body is kept 1/16 under the API's MAX_BODY_BYTES (2 MiB -> 1.875 MiB): the size
# is counted exactly, the margin is for an API whose limit differs a little from ours.
BODY_HEADROOM_DIVISOR = 16


class Publisher(Protocol):
    async def publish(self, posts: Sequence[Post]) -> list[str]: ...


@contextlib.asynccontextmanager
async def publisher_for(settings: Settings, api_url: str | None = None) -> AsyncIterator[Publisher]:
    """Redis mode: straight onto the stream. Embedded (or `api_url` given): through the API,
    since the in-process bus lives inside the `serve` process."""
    if api_url is None and settings.uses_redis:
        async with open_runtime(settings) as runtime:
            yield PatientPublisher(runtime.bus)
        return
    key = settings.api_keys[0].get_secret_value() if settings.api_keys else None
    api = ApiPublisher(
        api_url or f"http://{settings.api_host}:{settings.api_port}",
        key,
        max_body_bytes=settings.max_body_bytes,
    )
    try:
        yield api
    finally:
        await api.aclose()


class PatientPublisher:
    """Straight onto the bus, waiting out a full backlog (`BacklogFull`) or a Redis outage
    with backoff instead of failing: backpressure slows the producer, it loses nothing."""

    def __init__(self, bus: Publisher, max_wait_s: float = UNAVAILABLE_WAIT_S) -> None:
        self.bus = bus
        self.max_wait_s = max_wait_s

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        backoff = Backoff(0.2, 5.0)
        deadline = time.monotonic() + self.max_wait_s
        while True:
            try:
                return await self.bus.publish(posts)
            except (ServiceUnavailable, RedisError, OSError) as error:
                if time.monotonic() > deadline:
                    raise
                delay = backoff.next_delay()
                _log_wait(type(error).__name__, delay)
                await asyncio.sleep(delay)


def _log_wait(reason: str, wait_s: float) -> None:
    log.info(
        "the bus cannot take posts now, waiting",
        extra={"event": "ingest.backpressure", "reason": reason, "wait_s": round(wait_s, 2)},
    )


class ApiPublisher:
    """POST /api/posts on a running API, in requests of at most 1000 posts and a body under
    its MAX_BODY_BYTES; a request the API still finds too large (413) is halved and sent
    again; its rate limit (429 + Retry-After) and its backpressure (503 + Retry-After: the
    backlog is full or Redis is down) are waited out, with backoff, instead of failing."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_wait_s: float = UNAVAILABLE_WAIT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_wait_s = max_wait_s
        self.body_budget = max_body_bytes - max_body_bytes // BODY_HEADROOM_DIVISOR
        headers = {"Content-Type": "application/json"} | ({"X-API-Key": api_key} if api_key else {})
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        ids: list[str] = []
        for batch in self._batches(posts):
            ids.extend(await self._send(batch))
        return ids

    def _batches(self, posts: Sequence[Post]) -> Iterator[list[bytes]]:
        """The posts as JSON, grouped into request bodies under the count and size limits
        (a post too large on its own still goes alone, for the API to say so)."""
        batch: list[bytes] = []
        size = 1  # "[" + each post and its "," or "]"
        for post in posts:
            encoded = post.model_dump_json().encode()
            if batch and (
                len(batch) >= MAX_BATCH_POSTS or size + len(encoded) + 1 > self.body_budget
            ):
                yield batch
                batch, size = [], 1
            batch.append(encoded)
            size += len(encoded) + 1
        if batch:
            yield batch

    async def _send(self, batch: list[bytes]) -> list[str]:
        body = b"[" + b",".join(batch) + b"]"
        response = await self._post(body)
        if response.status_code == 413 and len(batch) > 1:
            log.info(
                "API refused a request as too large, halving it",
                extra={"event": "ingest.batch_halved", "posts": len(batch), "bytes": len(body)},
            )
            middle = len(batch) // 2
            return await self._send(batch[:middle]) + await self._send(batch[middle:])
        if response.status_code != 202:
            raise RuntimeError(f"the API refused posts ({response.status_code}): {response.text}")
        ids: list[str] = response.json()["post_ids"]
        return ids

    async def _post(self, body: bytes) -> httpx.Response:
        """One request, its rate limit and the API's 503s waited out."""
        response = await self._request(body)
        rate_limited = 0
        backoff = Backoff(0.2, 5.0)
        deadline = time.monotonic() + self.max_wait_s
        while response.status_code in (429, 503):
            retry_after = _seconds(response.headers.get("Retry-After"))
            if response.status_code == 429:
                rate_limited += 1
                if rate_limited > RATE_LIMIT_RETRIES:
                    break
                wait_s = retry_after or 1.0
                log.info(
                    "API rate limit reached, waiting",
                    extra={"event": "ingest.rate_limited", "wait_s": wait_s},
                )
            else:
                if time.monotonic() > deadline:
                    break
                wait_s = max(backoff.next_delay(), min(retry_after or 0.0, 5.0))
                _log_wait("503", wait_s)
            await asyncio.sleep(wait_s)
            response = await self._request(body)
        return response

    async def _request(self, body: bytes) -> httpx.Response:
        try:
            return await self._client.post("/api/posts", content=body)
        except httpx.TransportError as error:
            raise RuntimeError(
                f"cannot reach the API at {self.base_url} ({type(error).__name__}); "
                "is `sentiment-platform serve` running?"
            ) from error

    async def aclose(self) -> None:
        await self._client.aclose()


def _seconds(header: str | None) -> float | None:
    try:
        return float(header) if header else None
    except ValueError:
        return None


# --- file replay ---------------------------------------------------------------------------

OPTIONAL_FIELDS = ("post_id", "author", "created_at", "label", "label_emotion")
MAX_BAD_KEPT = 100  # bad rows kept with their reason; all of them are counted


@dataclass
class FileReport:
    """What a replay did: posts sent, and the bad rows (the first MAX_BAD_KEPT with line
    number and reason, all of them in `bad_count`), so a huge bad file costs no memory."""

    sent: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    bad_count: int = 0

    def add_bad(self, line: int, why: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_BAD_KEPT:
            self.bad.append((line, why))


def read_rows(path: Path, default_source: str | None = None) -> Iterator[tuple[int, Post | str]]:
    """(line number, post) for each good row, (line number, why) for each bad one.

    `.csv` is read as CSV with a header row; anything else as JSON Lines.
    """
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    for line, row in rows:
        if isinstance(row, str):
            yield line, row
            continue
        yield line, _to_post(row, default_source)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield number, f"not valid JSON ({error.msg} at column {error.colno})"
                continue
            yield number, row if isinstance(row, dict) else "a JSON object was expected"


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        first_line = reader.line_num + 1
        for row in reader:
            if None in row:
                yield first_line, "more values than header columns"
            else:
                yield first_line, dict(row)
            first_line = reader.line_num + 1


def _to_post(row: dict[str, Any], default_source: str | None) -> Post | str:
    row = {key.strip(): value for key, value in row.items() if isinstance(key, str)}
    for name in OPTIONAL_FIELDS:  # an empty CSV cell means "not given"
        if row.get(name) in ("", None):
            row.pop(name, None)
    if default_source and not row.get("source"):
        row["source"] = default_source
    if "label_emotion" in row:  # CSV: `label` is the sentiment, `label_emotion` beside it
        emotion = row.pop("label_emotion")
        if not isinstance(row.get("label"), str):
            return "label_emotion: needs a sentiment in the label column"
        row["label"] = {"sentiment": row["label"], "emotion": emotion}
    try:
        return Post.model_validate(row)
    except ValidationError as error:
        return "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'row'}: {problem['msg']}"
            for problem in error.errors()
        )


async def ingest_file(
    path: Path,
    publisher: Publisher,
    default_source: str | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = SEND_BATCH,
) -> FileReport:
    """Send the good rows in batches; the bad ones are skipped and reported by line number
    (see FileReport).

    `progress` is called with the line number reached after each row.
    """
    report = FileReport()
    batch: list[Post] = []
    for line, result in read_rows(path, default_source):
        if isinstance(result, str):
            report.add_bad(line, result)
        else:
            batch.append(result)
            if len(batch) >= batch_size:
                await publisher.publish(batch)
                report.sent += len(batch)
                batch = []
        if progress is not None:
            progress(line)
    if batch:
        await publisher.publish(batch)
        report.sent += len(batch)
    log.info(
        "file ingested",
        extra={
            "event": "ingest.file_done",
            "path": str(path),
            "sent": report.sent,
            "bad": report.bad_count,
        },
    )
    return report
