"""The LLM providers' circuit breaker, so a provider that keeps failing costs nothing while it
is down: the bottom floor's breaker (`sentiment_platform.circuit`), refusing with an error the
backend chain understands."""

from __future__ import annotations

from sentiment_platform import circuit
from sentiment_platform.services.analysis.backends import BackendUnavailable


class ProviderOutage(BackendUnavailable):
    """The backend is not taking calls for now (its rate limit, an open circuit): the posts
    are not at fault, so a worker waits and keeps them instead of counting a failure."""


class CircuitOpen(ProviderOutage, circuit.CircuitOpen):
    """The provider failed repeatedly; calls are refused until the cool-off ends."""


class CircuitBreaker(circuit.CircuitBreaker):
    """closed -> open after N consecutive failures -> half-open after a cool-off -> closed;
    refuses with `CircuitOpen`, which the chain treats as the provider being unavailable."""

    refusal = CircuitOpen
