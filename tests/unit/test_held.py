"""A held batch's refresh ends on release, even when the cancel is lost in a touch.

On Python 3.11 redis-py guards each send with `asyncio.wait_for`, which drops a cancel that
lands as the send completes (CPython gh-86296). Under load the worker then waited for ever
for a refresh that kept touching its entries: the batch stored, never acknowledged, and no
janitor could take it. The stand-in bus below loses its first cancels, so the race is certain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import cast

from sentiment_platform.bus import Bus, Entry
from sentiment_platform.pipeline.prefetch import Held


class CancelLosingBus:
    """`touch` as redis-py's send behaves when a cancel meets its completion: it returns
    (the first `losing` times; none left at the end, so a failing test leaves nothing
    running)."""

    def __init__(self, losing: int = 3) -> None:
        self.touches = 0
        self.touching = asyncio.Event()
        self.losing = losing

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        self.touches += 1
        self.touching.set()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if not self.losing:
                raise
            self.losing -= 1


@contextlib.asynccontextmanager
async def held_by(bus: CancelLosingBus) -> AsyncIterator[Held]:
    """A batch held with a touch in flight; whatever a failure left running is stopped."""
    held = Held(cast(Bus, bus), "w", [Entry("1-0", {})], interval_s=0.001)
    try:
        await asyncio.wait_for(bus.touching.wait(), 5)
        yield held
    finally:
        bus.losing = 0
        await held.release()


async def test_release_ends_the_refresh_when_a_touch_loses_the_cancel() -> None:
    bus = CancelLosingBus()
    async with held_by(bus) as held:
        releasing = asyncio.create_task(held.release())
        done, _ = await asyncio.wait([releasing], timeout=5)  # no cancel: it could be lost
        assert done, "release() still waiting for the refresh after 5 s"
        touches = bus.touches
        await asyncio.sleep(0.05)
        assert bus.touches == touches  # nothing touches the entries after release
