"""The bus posts travel on, and the events channel analysed posts and alerts are announced on.

One interface, two adapters: Redis Streams + pub/sub when `REDIS_HOST` is set
(`bus.redis`), an in-process equivalent otherwise (`bus.memory`). Callers never know which
one they hold, and both keep the same promise: an entry read but not acknowledged is
delivered again (to its reader's pending read, or to whoever claims it once it has been idle
long enough), so a crash never loses a post.

This module holds what both share: the protocols, the entry and event types, and the codecs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sentiment_platform.domain import Post

POST_FIELD = "data"  # an entry is {"data": <the Post as JSON>}
DEAD_SUFFIX = ":dead"


@dataclass(frozen=True, slots=True)
class Entry:
    """One delivery of a bus message: its id, its raw fields, and how often it was delivered."""

    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1


# The events that travel on the events channel.
POST_ANALYZED = "post.analyzed"  # data: the post item (PostView as JSON)
ALERT = "alert"  # data: the alert item, on fire, re-notification and resolve


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)


def encode_post(post: Post) -> dict[str, str]:
    return {POST_FIELD: post.model_dump_json()}


def decode_post(fields: Mapping[str, str]) -> Post:
    """The post an entry carries; ValueError (pydantic's ValidationError is one) if it has none."""
    if not fields:  # what a pending entry reads as once something deleted it (XDEL by hand)
        raise ValueError("entry is gone from the stream (deleted before it was processed)")
    if POST_FIELD not in fields:
        raise ValueError(f"entry has no {POST_FIELD!r} field")
    try:
        return Post.model_validate_json(fields[POST_FIELD])
    except ValueError:
        raise
    except Exception as error:  # whatever else an entry can trip over, it is a dead letter
        raise ValueError(
            f"entry cannot be decoded ({type(error).__name__}: {error})"[:500]
        ) from error


def dead_fields(entry: Entry, error: str) -> dict[str, str]:
    """What a dead letter keeps: the original fields, the error, and where it came from."""
    return entry.fields | {
        "error": error[:2_000],
        "original_id": entry.entry_id,
        "deliveries": str(entry.deliveries),
    }


@dataclass(frozen=True, slots=True)
class StreamStats:
    length: int  # entries kept in the stream
    pending: int  # delivered to a worker, not yet acknowledged
    lag: int  # not yet delivered to any worker (every kept entry when Redis cannot tell)

    @property
    def backlog(self) -> int:
        """Entries not yet acknowledged: what STREAM_MAX_BACKLOG bounds."""
        return self.pending + self.lag


@dataclass(frozen=True, slots=True)
class PendingPage:
    """One page of a consumer's pending entries, and where the next page starts: the last
    raw entry id read, even when that entry was filtered out (acked or claimed meanwhile);
    None once the list is exhausted."""

    entries: list[Entry]
    cursor: str | None


class Bus(Protocol):
    """A stream with one consumer group: at-least-once delivery, acks, claims, dead letters."""

    stream: str

    async def publish(self, posts: Sequence[Post]) -> list[str]:
        """Append posts to the stream in one round trip; returns their entry ids. All or
        none: past the backlog bound it raises `errors.BacklogFull` and appends nothing."""
        ...

    async def ensure_group(self) -> None:
        """Create the consumer group (reading from the stream's start) if it is missing."""
        ...

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        """Up to `count` never-delivered entries, waiting up to `block_ms` for the first."""
        ...

    async def read_pending(self, consumer: str, count: int, after: str = "0") -> PendingPage:
        """This consumer's delivered-but-unacked entries with ids above `after`, redelivered."""
        ...

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Reset the idle time of the entries this consumer still holds (a slow batch is not
        a dead one); entries another consumer took meanwhile are left alone."""
        ...

    async def trim(self) -> int:
        """Delete entries every group has acknowledged (the janitor's); returns how many."""
        ...

    async def ack(self, entry_ids: Sequence[str]) -> None: ...

    async def claim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries idle at least `min_idle_ms` (a dead consumer's); resumes its scan."""
        ...

    async def dead_letter(self, failures: Sequence[tuple[Entry, str]]) -> None:
        """Copy entries with their error to `<stream>:dead`, then ack them."""
        ...

    async def prune_consumers(self, min_idle_ms: int) -> list[str]:
        """Forget consumers holding nothing and silent for `min_idle_ms` (workers long gone)."""
        ...

    async def health(self) -> str:
        """'ok', 'in-process', or 'down: <reason>' for /api/health."""
        ...

    async def stats(self) -> StreamStats:
        """The stream's backlog, for /metrics."""
        ...


class Events(Protocol):
    """Fire-and-forget announcements (post.analyzed, alert) fanned out to every subscriber."""

    async def publish(self, event: Event) -> None: ...

    async def publish_many(self, events: Sequence[Event]) -> None:
        """Publish several events in one round trip."""
        ...

    def subscribe(self) -> AsyncIterator[Event]: ...


def encode_envelope(kind: str, data: Any) -> str:
    """The one wire form of an event, on the channel and on `/ws`: `{"type", "data"}`."""
    return orjson.dumps({"type": kind, "data": data}).decode()


def encode_event(event: Event) -> str:
    return encode_envelope(event.type, event.data)


def decode_event(raw: str | bytes) -> Event:
    message = orjson.loads(raw)
    return Event(type=message["type"], data=message.get("data") or {})


__all__ = [
    "ALERT",
    "DEAD_SUFFIX",
    "POST_ANALYZED",
    "POST_FIELD",
    "Bus",
    "Entry",
    "Event",
    "Events",
    "PendingPage",
    "StreamStats",
    "dead_fields",
    "decode_event",
    "decode_post",
    "encode_envelope",
    "encode_event",
    "encode_post",
]
