"""The bottom floor's circuit breaker and its deadline: one timeout opens it, calls are
refused at once during the cool-off, then exactly one trial goes through; a cancelled trial
leaves the next caller free to try."""

from __future__ import annotations

import asyncio

import pytest

from sentiment_platform.circuit import CircuitBreaker, CircuitOpen, call_within


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def hang() -> int:
    await asyncio.sleep(10)
    return 0


async def answer() -> int:
    return 42


async def test_one_timeout_opens_it_then_one_trial_after_the_cool_off() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", 1, 2.0, clock=clock)
    assert breaker.allows()
    with pytest.raises(TimeoutError):
        await call_within(breaker, hang, 0.01, (OSError,))
    assert breaker.state == "open"
    assert not breaker.allows() and breaker.retry_in_s() == 2.0
    with pytest.raises(CircuitOpen, match="next try in 2s"):
        breaker.before_call()

    clock.now += 2.0
    assert breaker.allows(), "the cool-off is over: one trial"
    assert not breaker.allows(), "only one trial at a time"
    assert await call_within(breaker, answer, 1.0, (OSError,)) == 42
    assert breaker.state == "closed" and breaker.allows()


async def test_a_failed_trial_reopens_and_an_error_reply_counts_as_an_answer() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", 1, 1.0, clock=clock)

    async def refused() -> int:
        raise ConnectionRefusedError

    async def error_reply() -> int:
        raise ValueError("NOSCRIPT")

    with pytest.raises(ConnectionRefusedError):
        await call_within(breaker, refused, 1.0, (OSError,))
    clock.now += 1.0
    assert breaker.allows()
    with pytest.raises(ConnectionRefusedError):
        await call_within(breaker, refused, 1.0, (OSError,))
    assert breaker.state == "open" and breaker.retry_in_s() == 1.0

    clock.now += 1.0
    assert breaker.allows()
    with pytest.raises(ValueError):
        await call_within(breaker, error_reply, 1.0, (OSError,))
    assert breaker.state == "closed", "Redis answered, with an error of its own: it is up"


async def test_a_cancelled_trial_lets_the_next_caller_try() -> None:
    clock = Clock()
    breaker = CircuitBreaker("redis", 1, 1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.allows()
    trial = asyncio.create_task(call_within(breaker, hang, 5.0, (OSError,)))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert breaker.allows(), "a cancelled trial told nothing: the next caller is the trial"
