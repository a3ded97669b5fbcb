"""The API process's background tasks: restarted when they die, reported when they are gone.

`Background.supervise` runs a loop such as the embedded worker: if it raises, the error is
logged and the loop is started again after a backoff, so one bad moment does not leave posts
piling up behind a dead task. `Background.expect` takes tasks other parts start (the hub's
loops, the alert monitor); `status()` says `down` for any that is no longer running, which
`/api/health` and `/readyz` report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any

from sentiment_platform.retry import Backoff, sleep_unless_stopped

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Background:
    def __init__(self) -> None:
        self._expected: dict[str, asyncio.Task[Any]] = {}
        self.restarts: dict[str, int] = {}

    def expect(self, *tasks: asyncio.Task[Any]) -> None:
        """Tasks started elsewhere that must keep running, reported by their names."""
        self._expected |= {task.get_name(): task for task in tasks}

    def supervise(self, stack: AsyncExitStack, run: Loop, name: str) -> None:
        """Run `run(stop)` as a task, restarted when it raises or returns before shutdown; on
        shutdown `stop` is set and the task awaited."""
        stop = asyncio.Event()
        self.restarts[name] = 0
        task = asyncio.create_task(self._keep_running(run, name, stop), name=name)
        self._expected[name] = task

        async def finish() -> None:
            stop.set()
            await task

        stack.push_async_callback(finish)

    async def _keep_running(self, run: Loop, name: str, stop: asyncio.Event) -> None:
        backoff = Backoff(0.5, 30.0)
        while not stop.is_set():
            try:
                await run(stop)
            except Exception as error:  # noqa: BLE001 - whatever killed it, start it again
                reason = f"{type(error).__name__}: {error}"[:300]
                log.exception(
                    "background task died",
                    extra={"event": "background.died", "task": name, "error": reason},
                )
            else:
                if stop.is_set():
                    return
                log.error(
                    "background task ended on its own",
                    extra={"event": "background.ended", "task": name},
                )
            delay = backoff.next_delay()
            self.restarts[name] += 1
            log.warning(
                "restarting background task",
                extra={"event": "background.restart", "task": name, "in_s": round(delay, 2)},
            )
            await sleep_unless_stopped(delay, stop)

    def status(self) -> dict[str, str]:
        """`ok` for each expected task still running, `down` for one that is gone."""
        return {name: "down" if task.done() else "ok" for name, task in self._expected.items()}
