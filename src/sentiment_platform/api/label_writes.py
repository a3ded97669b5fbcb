"""Label PUTs that arrive together are written together (group commit).

A label PUT is one small UPDATE, and what it costs is not the update but the trip around
it: on SQLite a hop to the driver's thread and back for the statement and another for the
commit, each waiting for the event loop's turn while the file's one writer place is held;
on PostgreSQL a round trip and a commit (a WAL flush) per label. So the PUTs queue here and
one writer task sets every label queued so far in one statement (`store.set_labels`, at most
MAX_LABEL_WRITES), then the next lot: alone a PUT waits for nothing, under load each write
carries the PUTs that came in while the one before it ran. Each PUT is answered when the
statement holding it has committed; a failed statement fails each of its PUTs (503).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

from sentiment_platform import store
from sentiment_platform.store.labels import MAX_LABEL_WRITES, LabelWrite

Opener = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
_Pending = tuple[LabelWrite, asyncio.Future[bool]]


class LabelWrites:
    """The queue of label PUTs and its one writer task (started by the first PUT)."""

    def __init__(self) -> None:
        self._queued: deque[_Pending] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def put(self, connect: Opener, write: LabelWrite) -> bool:
        """Queue `write`; True once its label is committed, False when there is no such
        post. `connect` opens the connection a lot is written on (`ApiParts.reading`)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queued.append((write, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(connect), name="label-writes")
        return await done

    async def _write(self, connect: Opener) -> None:
        while self._queued:
            lot: list[_Pending] = []
            posts: set[str] = set()
            while self._queued and (
                len(posts) < MAX_LABEL_WRITES or self._queued[0][0].post_id in posts
            ):
                pending = self._queued.popleft()
                lot.append(pending)
                posts.add(pending[0].post_id)
            try:
                async with connect() as connection:
                    found = await store.set_labels(connection, [write for write, _ in lot])
            except BaseException as error:  # each PUT of the lot answers it (a 503)
                for _, done in lot:
                    if not done.done():
                        done.set_exception(error)
                if isinstance(error, asyncio.CancelledError):  # shutting down
                    self._fail_queued(error)
                    raise
                continue
            for write, done in lot:
                if not done.done():
                    done.set_result(write.post_id in found)

    def _fail_queued(self, error: BaseException) -> None:
        while self._queued:
            _, done = self._queued.popleft()
            if not done.done():
                done.set_exception(error)
