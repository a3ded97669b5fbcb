"""Waiting out outages: exponential backoff with jitter, one retry-until loop, and stopping
the loops that wait them out.

Every caller that retries (the bus's subscriptions, the worker, the LLM client) spaces its
tries the same way, so a fleet reconnecting after an outage does not stampede.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
CANCEL_AGAIN_S = 0.1  # a task still running this long after a cancel is cancelled again


class Stopped(Exception):
    """Shutdown was asked for while an outage was being waited out."""


class Backoff:
    """Delays that double from `base_s` up to `cap_s`, with jitter.

    Equal jitter (half fixed, half random) by default: a retry never comes right away.
    Full jitter (uniform in [0, ceiling)) spreads callers the most; the LLM client uses it.
    """

    def __init__(
        self,
        base_s: float = 0.1,
        cap_s: float = 5.0,
        *,
        full_jitter: bool = False,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.full_jitter = full_jitter
        self.attempt = 0
        self._rng = rng

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        draw = self._rng()
        if self.full_jitter:
            return draw * ceiling
        return ceiling / 2 + draw * ceiling / 2

    def next_delay(self) -> float:
        self.attempt += 1
        return self.delay(self.attempt)

    def reset(self) -> None:
        self.attempt = 0


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event) -> None:
    """Sleep, but wake at once when shutdown is asked for."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def retry_until(
    action: Callable[[], Awaitable[T]],
    *,
    retryable: Callable[[Exception], bool],
    stop: asyncio.Event,
    backoff: Backoff,
    on_retry: Callable[[Exception, float], None],
) -> T:
    """`action()` until it succeeds. A retryable error waits (`on_retry` says so) and tries
    again; any other error propagates; on shutdown the wait ends with `Stopped`."""
    while True:
        try:
            return await action()
        except Exception as error:
            if not retryable(error):
                raise
            if stop.is_set():
                raise Stopped from error
            delay = backoff.next_delay()
            on_retry(error, delay)
            await sleep_unless_stopped(delay, stop)


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again while one runs on: on
    Python 3.11 a cancel that meets a completing `asyncio.wait_for` (redis-py guards every
    send with one) is lost (CPython gh-86296), and a loop would carry on for ever. A cancel of
    the caller stays the caller's: `asyncio.wait` does not swallow it."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: how a loop ended was logged or reported by then
