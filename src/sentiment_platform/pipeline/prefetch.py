"""The worker's first stage (issue 31): a batch read, decoded and marked (`Settler.mark`),
held until the second stage has analysed, saved and acked it.

The worker reads and marks batch N+1 while batch N is analysed, saved and acked, so the
waits of one (the duplicate index's round trip, the database transaction, the acks) overlap
the CPU work of the other (decoding, normal forms, fingerprints, language detection). One
batch ahead, no more: batch N is assigned in the duplicate index before batch N+1 (an
original in N stays the first of its group). A worker told to stop finishes the batch read
ahead as well as the one in hand; one leaving on an error leaves it pending for its next
start (the index marks a redelivery as it marked the first delivery). A held batch's entries
are kept claimed (`Held`) from their read to their ack, in hand or waiting: no janitor takes
them from a live worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from redis.exceptions import RedisError

from sentiment_platform.bus import Bus, Entry, decode_post
from sentiment_platform.pipeline.settle import Failure, Item, Marked, Stage, log_outage, one_line
from sentiment_platform.retry import cancel_and_wait

log = logging.getLogger(__name__)


class Read(Enum):
    """The worker's reads: the janitor's claim, its own pending list, new entries."""

    CLAIM = "claim"
    PENDING = "pending"
    NEW = "new"


@dataclass(slots=True)
class Reads:
    """Where the worker reads next."""

    next_claim: float  # time.monotonic() of the janitor's next turn
    pending_after: str | None = "0"  # a restarted worker first finishes what it held
    retry_at: float | None = None  # when entries that failed are due again

    def ahead_safe(self, read: Read) -> bool:
        """Whether `read` may run while a batch is in hand: new entries, or the next page of
        the pending list, cannot return it. The pending list from its start (which holds
        the batch in hand) and the janitor's claim wait for its ack."""
        return read is Read.NEW or (read is Read.PENDING and self.pending_after != "0")


class Held:
    """Resets the entries' idle time every `interval_s` until `release`: a slow batch (an LLM
    retrying, a database outage waited out, a batch waiting its turn) is not a dead one, so
    no other worker claims it; only a worker that stopped is robbed."""

    def __init__(self, bus: Bus, consumer: str, entries: Sequence[Entry], interval_s: float):
        self._ids = [entry.entry_id for entry in entries]
        self._bus, self._consumer, self._interval_s = bus, consumer, interval_s
        self._task = asyncio.create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._bus.touch(self._consumer, self._ids)
            except (RedisError, OSError) as error:  # the claim may lapse; nothing is lost
                log_outage(self._consumer, "bus", error, 0.0, action="touch")

    async def release(self) -> None:
        """Stops the refresh, cancelling until it has ended: a cancel that meets a touch's
        send can be lost (`retry.cancel_and_wait`), and the touches then went on for ever
        while the worker waited for them, its batch stored but never acknowledged."""
        await cancel_and_wait(self._task)


@dataclass(slots=True)
class Batch:
    """Entries read and marked, waiting for (or in) the second stage."""

    entries: Sequence[Entry]
    marked: Marked
    dead: list[tuple[Entry, Failure]]  # delivered too often, or undecodable: never marked
    held: Held
    started: float = field(default_factory=time.perf_counter)


def decoded(
    entries: Sequence[Entry], max_deliveries: int
) -> tuple[list[Item], list[tuple[Entry, Failure]]]:
    """The batch's posts, one item per post_id with every entry that carried it, and the
    entries to dead-letter at once."""
    items: dict[str, Item] = {}
    dead: list[tuple[Entry, Failure]] = []
    for entry in entries:
        if entry.deliveries > max_deliveries:
            # Delivered again and again without an ack: it crashes whoever reads it.
            detail = f"not acknowledged after {entry.deliveries - 1} deliveries"
            dead.append((entry, Failure(Stage.DELIVERIES, detail)))
            continue
        try:
            post = decode_post(entry.fields)
        except Exception as error:  # noqa: BLE001 - whatever it is, it will never parse
            dead.append((entry, Failure(Stage.DECODE, one_line(error))))
            continue
        items.setdefault(post.post_id, Item(post)).entries.append(entry)
    return list(items.values()), dead


async def take_or_drop(ahead: asyncio.Task[Batch | None], stop: asyncio.Event) -> Batch | None:
    """The batch read ahead when the worker leaves. On `stop` it is let finish (a read ends
    within block_ms, marks give up on stop) and returned, for the worker to finish as it
    finishes the batch in hand: a polite stop leaves nothing it read pending. On an error it
    is cancelled, its entries no longer kept claimed (pending, for the next start)."""
    if not stop.is_set():
        ahead.cancel()
    await asyncio.wait([ahead])
    if ahead.cancelled() or ahead.exception() is not None:
        return None  # a read or marks that failed or gave up: what they held they released
    batch = ahead.result()
    if batch is not None and not stop.is_set():
        await batch.held.release()
        return None
    return batch
