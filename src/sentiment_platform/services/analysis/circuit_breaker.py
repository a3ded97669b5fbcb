"""A circuit breaker, so a provider that keeps failing costs nothing while it is down."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from sentiment_platform.services.analysis.backends import BackendUnavailable

log = logging.getLogger(__name__)


class ProviderOutage(BackendUnavailable):
    """The backend is not taking calls for now (its rate limit, an open circuit): the posts
    are not at fault, so a worker waits and keeps them instead of counting a failure."""


class CircuitOpen(ProviderOutage):
    """The provider failed repeatedly; calls are refused until the cool-off ends."""


class CircuitBreaker:
    """closed -> open after N consecutive failures -> half-open after a cool-off -> closed.

    While open every call is refused at once; half-open lets exactly one trial call through.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_running or self._clock() - self._opened_at >= self._cooldown_s:
                return "half-open"
            return "open"

    def before_call(self) -> None:
        """Raise `CircuitOpen` unless this call may go to the provider."""
        with self._lock:
            if self._opened_at is None:
                return
            waited = self._clock() - self._opened_at
            if self._trial_running or waited < self._cooldown_s:
                retry_in = max(0.0, self._cooldown_s - waited)
                raise CircuitOpen(f"{self.name}: circuit open, next try in {retry_in:.0f}s")
            self._trial_running = True
            log.info(
                "circuit half-open", extra={"event": "circuit.half_open", "backend": self.name}
            )

    def record_success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("circuit closed", extra={"event": "circuit.closed", "backend": self.name})
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self._threshold:
                # Log the transition only; late failures of calls already in flight re-arm silently.
                if self._opened_at is None or self._trial_running:
                    log.warning(
                        "circuit opened",
                        extra={
                            "event": "circuit.open",
                            "backend": self.name,
                            "failures": self._failures,
                            "cooldown_s": self._cooldown_s,
                        },
                    )
                self._opened_at = self._clock()
                self._trial_running = False
