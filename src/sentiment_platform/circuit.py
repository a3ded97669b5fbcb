"""Circuit breakers, so a dependency that keeps failing, or stops answering, costs its callers
nothing while it is down.

closed -> open after `failure_threshold` consecutive failures -> half-open once `cooldown_s`
has passed, when exactly one trial call goes through -> closed on its success, open again on
its failure. While open every call is refused at once.

The LLM backends use one per provider (`services/analysis/circuit_breaker.py`). The Redis
calls a request waits on (the bus's publish, health and stats, the rate limiter's counter)
use one each with a deadline (`call_within`): a Redis that hangs — a network partition, a
paused process — makes one caller wait out one deadline, and the callers after it are
answered at once (the limiter lets them through uncounted, a write gets a 503) until a trial
call finds Redis answering again. It lives on the bottom floor so the bus and the services
share it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar, Literal, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class CircuitOpen(Exception):
    """The dependency failed; calls are refused until the cool-off ends."""


class CircuitBreaker:
    """closed -> open after N consecutive failures -> half-open after a cool-off -> closed.

    While open every call is refused at once; half-open lets exactly one trial call through.
    Thread-safe (the LLM backends call from worker threads). The first opening is logged as a
    warning; a failed trial re-arms it quietly, so a short cool-off does not flood the log.
    """

    refusal: ClassVar[type[Exception]] = CircuitOpen  # what `before_call` raises

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.cooldown_s = cooldown_s
        self._threshold = failure_threshold
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._down_since: float | None = None
        self._trial_running = False

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_running or self._clock() - self._opened_at >= self.cooldown_s:
                return "half-open"
            return "open"

    def retry_in_s(self) -> float:
        """Seconds until the next trial may go through (0 when closed or due)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allows(self) -> bool:
        """Whether this call may go to the dependency; when half-open, the first caller to ask
        becomes the trial and must report how it went (`record_*` or `abandon`)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial_running or self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._trial_running = True
        log.debug("circuit half-open", extra={"event": "circuit.half_open", "backend": self.name})
        return True

    def before_call(self) -> None:
        """Raise `refusal` unless this call may go to the dependency."""
        if not self.allows():
            retry_in = self.retry_in_s()
            raise self.refusal(f"{self.name}: circuit open, next try in {retry_in:.0f}s")

    def record_success(self) -> None:
        with self._lock:
            down_since = self._down_since
            self._failures = 0
            self._opened_at = None
            self._down_since = None
            self._trial_running = False
        if down_since is not None:
            down_s = round(self._clock() - down_since, 1)
            log.info(
                "circuit closed",
                extra={"event": "circuit.closed", "backend": self.name, "down_s": down_s},
            )

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if not (self._trial_running or self._failures >= self._threshold):
                return
            first = self._down_since is None
            self._opened_at = self._clock()
            self._down_since = self._down_since if not first else self._opened_at
            self._trial_running = False
        if first:  # late failures of calls in flight, and failed trials, re-arm silently
            log.warning(
                "circuit opened",
                extra={
                    "event": "circuit.open",
                    "backend": self.name,
                    "failures": self._failures,
                    "cooldown_s": self.cooldown_s,
                },
            )

    def abandon(self) -> None:
        """The call was cancelled before it could tell: the next caller may try instead."""
        with self._lock:
            self._trial_running = False


async def call_within(
    breaker: CircuitBreaker,
    action: Callable[[], Awaitable[T]],
    deadline_s: float,
    outages: tuple[type[BaseException], ...],
) -> T:
    """`action()` cut off after `deadline_s` (`TimeoutError`), its outcome told to `breaker`:
    a timeout or one of `outages` is a failure, any other answer (an error reply included) a
    success. The caller has asked `breaker.allows()` first and decides what a refusal means.
    """
    failures: tuple[type[BaseException], ...] = (TimeoutError, *outages)
    try:
        async with asyncio.timeout(deadline_s):
            result = await action()
    except failures:
        breaker.record_failure()
        raise
    except asyncio.CancelledError:
        breaker.abandon()
        raise
    except Exception:
        breaker.record_success()  # it answered, with an error of its own
        raise
    breaker.record_success()
    return result
