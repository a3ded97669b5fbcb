"""The bus posts travel on, and the events channel analysed posts and alerts are announced on.

One interface, two adapters: Redis Streams + pub/sub when `REDIS_HOST` is set, an in-process
equivalent otherwise. Callers never know which one they hold.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sentiment_platform.domain import Post


@dataclass(frozen=True, slots=True)
class Entry:
    """One delivery of a bus message: its id, its raw fields, and how often it was delivered."""

    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)


class Bus(Protocol):
    async def publish(self, posts: Sequence[Post]) -> list[str]:
        """Append posts to the stream; returns their entry ids."""
        ...

    async def health(self) -> str:
        """'ok', 'in-process', or 'down: <reason>' for /api/health."""
        ...

    async def close(self) -> None: ...


class Events(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(self) -> AsyncIterator[Event]: ...
