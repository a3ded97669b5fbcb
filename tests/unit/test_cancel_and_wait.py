"""`cancel_and_wait` stops a loop even when cancels are lost, as on Python 3.11 a cancel that
meets a completing `asyncio.wait_for` is (redis-py guards every send with one)."""

from __future__ import annotations

import asyncio

from sentiment_platform.retry import cancel_and_wait


class Losing:
    """A loop that swallows its first `left` cancels, as wait_for's race does."""

    def __init__(self, left: int) -> None:
        self.left, self.lost = left, 0

    async def run(self) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if self.left == 0:
                    raise
                self.left, self.lost = self.left - 1, self.lost + 1


async def test_a_loop_that_loses_cancels_is_cancelled_again_until_it_ends() -> None:
    loop = Losing(3)
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and loop.lost == 3


async def test_tasks_already_ended_or_failed_are_waited_without_raising() -> None:
    async def fails() -> None:
        raise RuntimeError("died earlier")

    failed, done = asyncio.create_task(fails()), asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait([failed, done])
    await cancel_and_wait(failed, done)  # nothing to cancel; the failure is not raised here
    assert failed.done() and done.done()


async def test_a_cancel_of_the_caller_reaches_the_caller() -> None:
    loop = Losing(10**9)  # loses every cancel until told otherwise
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.wait([waiting], timeout=5)
    assert waiting.cancelled() and loop.lost > 0
    loop.left = 0  # let it end, so nothing is left running
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled()
