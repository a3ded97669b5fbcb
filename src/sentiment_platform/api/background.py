"""The API process's background tasks: restarted when they die, reported when they are gone.

`Background.supervise` runs a loop such as the embedded worker: if it raises, the error is
logged and the loop is started again after a backoff, so one bad moment does not leave posts
piling up behind a dead task. `Background.expect` names tasks other parts start (the hub's
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
        self._expected: list[str] = []
        self.restarts: dict[str, int] = {}

    def expect(self, *names: str) -> None:
        """Tasks started elsewhere, by their asyncio task names, that must keep running."""
        self._expected.extend(names)

    def supervise(self, stack: AsyncExitStack, run: Loop, name: str) -> None:
        """Run `run(stop)` as a task, restarted when it raises or returns before shutdown; on
        shutdown `stop` is set and the task awaited."""
        stop = asyncio.Event()
        self.restarts[name] = 0
        self._expected.append(name)
        task = asyncio.create_task(self._keep_running(run, name, stop), name=name)

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
        running = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
        return {name: "ok" if name in running else "down" for name in self._expected}
