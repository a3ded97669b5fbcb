"""A short cache with single flight for counts relative to now (`METRICS_CACHE_S`): metrics
answers, posts-page totals, alerts pages (and, for 1 s, /api/health's checks).

Sixty-four dashboards asking for the last hour at once cost one computation: the first
caller computes, the others await its answer, and the answer serves everyone for
`ttl_s` seconds (an answer relative to now moves by that much, at most). A cache that
serves stale (the metrics answers and page totals, `ApiParts.counts_cache`) makes only
the recomputing caller wait once an answer has expired: the others get the previous
answer until the new one is in, so an answer is at most `ttl_s` plus one computation old.
Waiting all together, 64 connections on one key stalled for a 30-day answer's computation
every second. Each app holds its own caches (`ApiParts`), so apps on different stores never
share an answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlightCache(Generic[T]):
    def __init__(self, ttl_s: float, max_entries: int = 1_024, serve_stale: bool = False) -> None:
        self.ttl_s = ttl_s
        self.serve_stale = serve_stale
        self._max_entries = max_entries
        self._answers: dict[Hashable, tuple[float, T]] = {}
        self._flights: dict[Hashable, asyncio.Future[T]] = {}
        self._generation = 0  # bumped by `drop`: an answer computed across a drop is not kept
        self.computations = 0  # how many times `compute` ran (the tests count them)

    def drop(self) -> None:
        """Forget every shared answer, and any being computed now: the next caller computes
        afresh (what changed may have been read before it changed)."""
        self._answers.clear()
        self._flights.clear()
        self._generation += 1

    def fresh(self, key: Hashable) -> T | None:
        """The shared answer for `key` while it has not expired; never computes, never stale."""
        cached = self._answers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    async def get(
        self,
        key: Hashable,
        compute: Callable[[], Awaitable[T]],
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """The shared answer for `key`, else one computation shared by every caller waiting
        on it; the answer is kept for `ttl_s` unless `keep` says it must not be."""
        if self.ttl_s <= 0:
            self.computations += 1
            return await compute()
        now = time.monotonic()
        cached = self._answers.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        flight = self._flights.get(key)
        if flight is not None:
            if cached is not None and self.serve_stale:
                return cached[1]  # being recomputed: the previous answer, without waiting
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        generation = self._generation
        try:
            self.computations += 1
            answer = await compute()
        except BaseException as error:
            flight.set_exception(error)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
        if len(self._answers) >= self._max_entries:
            self._answers.clear()
        if generation == self._generation and (keep is None or keep(answer)):
            self._answers[key] = (time.monotonic() + self.ttl_s, answer)
        flight.set_result(answer)
        return answer
