"""Reads counted in batches in front of the shared counter; writes told one by one."""

from __future__ import annotations

import pytest

from sentiment_platform.api.security import BatchedCounter, MemoryCounter, RateLimiter
from sentiment_platform.errors import TooManyRequests

pytestmark = pytest.mark.asyncio


class Told(MemoryCounter):
    """The shared counter, counting how often it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.round_trips = 0

    async def hit(self, bucket: str, window_s: int, calls: int = 1) -> int:
        self.round_trips += 1
        return await super().hit(bucket, window_s, calls)


async def test_a_batch_of_reads_costs_one_round_trip() -> None:
    shared = Told()
    reads = BatchedCounter(shared, batch=10)
    counts = [await reads.hit("caller", 60) for _ in range(100)]
    assert counts == list(range(1, 101))  # the count seen here never lags this process
    assert shared.round_trips == 10  # the first call, then every tenth
    assert await shared.hit("caller", 60, 0) == 91  # told all but the untold tail


async def test_processes_learn_each_others_counts_a_batch_late_at_most() -> None:
    shared = Told()
    first, second = BatchedCounter(shared, batch=5), BatchedCounter(shared, batch=5)
    for _ in range(20):
        await first.hit("caller", 60)
    # The second process's first call asks the shared counter: it starts from the others'.
    assert await second.hit("caller", 60) >= 20 - 4 + 1


async def test_reads_over_the_limit_are_refused_without_asking_again() -> None:
    shared = Told()
    limiter = RateLimiter(shared, per_minute=1_000)  # reads in batches of 10
    for _ in range(1_000):
        await limiter.check("ip:203.0.113.1", write=False)
    with pytest.raises(TooManyRequests) as refused:
        await limiter.check("ip:203.0.113.1", write=False)
    assert refused.value.status_code == 429
    assert shared.round_trips <= 101  # not a thousand


async def test_writes_are_told_one_by_one() -> None:
    shared = Told()
    limiter = RateLimiter(shared, per_minute=1_000)
    for _ in range(50):
        await limiter.check("ip:203.0.113.2", write=True)
    assert shared.round_trips == 50


async def test_a_small_limit_is_counted_exactly() -> None:
    shared = Told()
    limiter = RateLimiter(shared, per_minute=150)  # 1 % is under one call: batches of one
    for _ in range(150):
        await limiter.check("ip:203.0.113.3", write=False)
    assert shared.round_trips == 150
    with pytest.raises(TooManyRequests):
        await limiter.check("ip:203.0.113.3", write=False)
