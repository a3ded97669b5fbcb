"""Settling a batch: mark it (languages, copies: `enrich`), analyse each post with a model
that reads its language, in one call, and store it in one transaction. A post no model
reads is stored unanalysed, marked "unsupported_language".

What cannot be settled is told apart by where it failed (`Failure`): a post that breaks the
analyzer or the store costs its own entry, found by halving the batch; an analyzer or a
store that is down is waited out in place, so an outage costs no deliveries. A provider that
is rate limiting or behind an open circuit (`ProviderOutage`) is such an outage, waited out
at once without splitting; a batch the database times out on is halved (not retried whole
forever), and only a single post that still times out is waited on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import Entry
from sentiment_platform.domain import UNSUPPORTED_LANGUAGE, Analysis, Post, PostMarks, utcnow
from sentiment_platform.pipeline.enrich import Enricher
from sentiment_platform.retry import Backoff, Stopped, retry_until, sleep_unless_stopped
from sentiment_platform.services.alerting.rule_hits import RulesCache, rule_hits, stored_pairs
from sentiment_platform.services.analysis.backends import Analyzer, analyze_languages
from sentiment_platform.services.analysis.circuit_breaker import ProviderOutage
from sentiment_platform.services.analysis.duplicates import DuplicateIndex
from sentiment_platform.services.analysis.model_switch import model_switch_for

log = logging.getLogger(__name__)

PROBE_TEXT = "ok"  # tells a down analyzer from bad posts
# SQLSTATE classes of errors that belong to particular rows (data exception, integrity
# violation): the batch is split to find them, instead of being retried as an outage.
ROW_SQLSTATE_CLASSES = ("22", "23")
STATEMENT_TIMEOUT_SQLSTATE = "57014"  # query_canceled: statement_timeout ran out


class Stage(StrEnum):
    """Where an entry failed."""

    DECODE = "malformed entry"
    MARKS = "language or copy detection"
    ANALYZER = "analyzer"
    STORE = "store"
    DELIVERIES = "deliveries"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an entry was not stored; what its dead letter says."""

    stage: Stage
    detail: str

    def __str__(self) -> str:
        return f"{self.stage}: {self.detail}"


class RowError(Exception):
    """The store refused some row of the batch (a NUL byte, a constraint), not the batch."""


class TooSlow(Exception):
    """The database timed out on this batch: try it in halves."""


@dataclass(slots=True)
class Item:
    """One post to analyse, and every entry that carried it (a producer may send one twice)."""

    post: Post
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stored:
    """An item in the store, with its analysis (None: no model reads its language): acked;
    counted and announced only if `new` (a redelivery of a post stored before is acked,
    not announced twice)."""

    item: Item
    analysis: Analysis | None
    new: bool
    marks: PostMarks


Settled = tuple[list[Stored], list[tuple[Item, Failure]]]


@dataclass(frozen=True, slots=True)
class Marked:
    """A batch's items with their marks, and those that could not be marked (`Stage.MARKS`)."""

    items: list[Item]
    marks: dict[str, PostMarks]
    unmarked: list[tuple[Item, Failure]]


class Settler:
    """Analyses and stores batches for one consumer (`name` only labels its log lines)."""

    def __init__(
        self,
        analyzer: Analyzer,
        session_factory: async_sessionmaker[AsyncSession],
        name: str,
        duplicates: DuplicateIndex,
    ) -> None:
        self.analyzer = analyzer
        self.session_factory = session_factory
        self.name = name
        self.rules = RulesCache()  # the compiled keyword matcher over every rule
        self.models = model_switch_for(analyzer)  # None: an analyzer outside the registry
        self.enricher = Enricher(
            duplicates, lambda error, delay: log_outage(name, "duplicate index", error, delay)
        )

    async def start(self) -> None:
        """Before the first batch: the language model loaded, and what the registry has
        active served."""
        await self.enricher.start()
        if self.models is not None:
            await self.models.start(self.session_factory)

    async def idle(self) -> None:
        """Nothing to read: still notice a new activation, load it and (no batch being in
        hand) swap it in, so the next post meets the new model."""
        if self.models is not None:
            await self.models.poll_alone(self.session_factory)
            self.models.swap()

    async def stop(self) -> None:
        if self.models is not None:
            await self.models.close()

    async def mark(self, items: list[Item], stop: asyncio.Event) -> Marked:
        """The batch's marks, taken once before `settle` (a split or a retry there analyses
        the same marks); the worker marks the next batch while this one settles."""
        marks, unmarked = await self._mark(items, stop)
        return Marked([item for item in items if item.post.post_id in marks], marks, unmarked)

    async def settle(self, marked: Marked, stop: asyncio.Event) -> Settled:
        """Settle a marked batch. When every post of it failed in the analyzer and a harmless
        probe text fails too, the analyzer is down rather than the posts bad: wait and retry
        in place, so an outage costs no deliveries and sends nothing to the dead letters."""
        if self.models is not None:
            self.models.swap()  # between batches: this one is analysed by one set throughout
        items, marks, unmarked = marked.items, dict(marked.marks), marked.unmarked
        backoff = Backoff(0.5, 30.0)
        while True:
            stored, failed = await self._settle(items, marks, stop)
            failed += unmarked
            analyzer_only = all(f.stage is Stage.ANALYZER for _, f in failed)
            if stored or not failed or not analyzer_only or await self._analyzer_answers():
                return stored, failed
            if stop.is_set():
                raise Stopped
            delay = backoff.next_delay()
            log_outage(self.name, "analyzer", failed[0][1], delay, posts=len(failed))
            await sleep_unless_stopped(delay, stop)

    async def _mark(
        self, items: list[Item], stop: asyncio.Event
    ) -> tuple[dict[str, PostMarks], list[tuple[Item, Failure]]]:
        """The items' marks; an item whose text breaks the detector or the index (found by
        halving) fails alone. An index that is down is waited out inside `marks`."""
        try:
            return await self.enricher.marks([item.post for item in items], stop), []
        except Stopped:
            raise
        except Exception as error:  # noqa: BLE001 - whatever it is, it is this batch's
            if len(items) == 1:
                return {}, [(items[0], Failure(Stage.MARKS, one_line(error)))]
        middle = len(items) // 2
        marks, failed = await self._mark(items[:middle], stop)
        more, failed_more = await self._mark(items[middle:], stop)
        return marks | more, failed + failed_more

    async def _analyzer_answers(self) -> bool:
        try:
            await self.analyzer.analyze([PROBE_TEXT])
        except Exception:  # noqa: BLE001 - any failure means it is down
            return False
        return True

    async def _settle(
        self, items: list[Item], marks: dict[str, PostMarks], stop: asyncio.Event
    ) -> Settled:
        if not items:
            return [], []
        posts = [item.post for item in items]
        texts = [post.content for post in posts]
        languages = [marks[post.post_id].language for post in posts]
        try:
            predictions = await retry_until(
                lambda: analyze_languages(self.analyzer, texts, languages),
                retryable=lambda error: isinstance(error, ProviderOutage),
                stop=stop,
                backoff=Backoff(0.5, 30.0),
                on_retry=lambda error, delay: log_outage(
                    self.name, "analyzer", error, delay, posts=len(posts)
                ),
            )
            if len(predictions) != len(posts):
                raise ValueError(f"{len(predictions)} predictions for {len(posts)} texts")
        except Stopped:
            raise
        except Exception as error:  # noqa: BLE001 - any analyzer failure is the batch's failure
            failure = Failure(Stage.ANALYZER, one_line(error))
            return await self._split(items, marks, stop, failure)
        analyzed_at = utcnow()
        analyses: dict[str, Analysis] = {}
        for post, prediction in zip(posts, predictions, strict=True):
            unread = prediction is None
            if prediction is not None:
                analyses[post.post_id] = Analysis.of(post.post_id, prediction, analyzed_at)
            mark, status = marks[post.post_id], UNSUPPORTED_LANGUAGE if unread else None
            if mark.analysis != status:  # a frozen dataclass's `replace` a post cost 1 µs
                marks[post.post_id] = replace(mark, analysis=status)
        try:
            new = await self._save(posts, analyses, marks, stop)
        except RowError as error:
            return await self._split(items, marks, stop, Failure(Stage.STORE, str(error)))
        except TooSlow as error:
            log.warning(
                "batch timed out in the store, splitting it",
                extra={"event": "worker.store_split", "consumer": self.name, "posts": len(posts),
                       "error": str(error)},
            )  # fmt: skip
            return await self._halves(items, marks, stop)
        ids = [item.post.post_id for item in items]
        stored = [
            Stored(item, analyses.get(pid), pid in new, marks[pid])
            for item, pid in zip(items, ids, strict=True)
        ]
        return stored, []

    async def _split(
        self, items: list[Item], marks: dict[str, PostMarks], stop: asyncio.Event, failure: Failure
    ) -> Settled:
        """Halve and retry, so one bad post costs its own entry, not its batch."""
        if len(items) == 1:
            return [], [(items[0], failure)]
        return await self._halves(items, marks, stop)

    async def _halves(
        self, items: list[Item], marks: dict[str, PostMarks], stop: asyncio.Event
    ) -> Settled:
        middle = len(items) // 2
        stored_a, failed_a = await self._settle(items[:middle], marks, stop)
        stored_b, failed_b = await self._settle(items[middle:], marks, stop)
        return stored_a + stored_b, failed_a + failed_b

    async def _save(
        self,
        posts: Sequence[Post],
        analyses: dict[str, Analysis],
        marks: dict[str, PostMarks],
        stop: asyncio.Event,
    ) -> set[str]:
        """One transaction; a store outage is waited out (never acking what was not stored).
        Returns the post_ids it stored (not those stored before)."""
        analysed = [post for post in posts if post.post_id in analyses]
        labels = [analyses[post.post_id] for post in analysed]

        async def save() -> set[str]:
            try:
                async with self.session_factory() as session, session.begin():
                    new = await store.save_batch(session, posts, labels, marks)
                    # The alert rules' counts, in the same transaction: counted once.
                    pairs = stored_pairs(analysed, labels, new)
                    matcher = await self.rules.matcher(session)
                    await store.add_rule_counts(session, rule_hits(matcher, pairs, marks))
                    if self.models is not None:  # new activations, read as the rules are
                        await self.models.poll(session)
                    return new
            except Exception as error:
                if _is_row_error(error):
                    raise RowError(one_line(getattr(error, "orig", None) or error)) from error
                if len(posts) > 1 and _is_timeout(error):
                    raise TooSlow(one_line(error)) from error
                raise

        return await retry_until(
            save,
            retryable=lambda error: not isinstance(error, RowError | TooSlow),
            stop=stop,
            backoff=Backoff(0.2, 10.0),
            on_retry=lambda error, delay: log_outage(self.name, "store", error, delay),
        )


def log_outage(
    consumer: str, what: str, error: BaseException | Failure, delay: float, **fields: object
) -> None:
    """One line per wait: what is down, why, and when the next try comes."""
    log.warning(
        f"{what} unavailable",
        extra={
            "event": f"worker.{what}_unavailable",
            "consumer": consumer,
            "error": str(error) if isinstance(error, Failure) else one_line(error),
            "retry_in_s": round(delay, 2),
            **fields,
        },
    )


def _is_row_error(error: Exception) -> bool:
    if isinstance(error, DataError | IntegrityError):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return isinstance(error, DBAPIError) and str(sqlstate)[:2] in ROW_SQLSTATE_CLASSES


def _is_timeout(error: Exception) -> bool:
    """A statement timeout (SQLSTATE 57014) or the driver's own command timeout."""
    orig = getattr(error, "orig", None)
    if str(getattr(orig, "sqlstate", "")) == STATEMENT_TIMEOUT_SQLSTATE:
        return True
    causes = (error, orig, error.__cause__, getattr(orig, "__cause__", None))
    return any(isinstance(cause, TimeoutError) for cause in causes)


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}"[:500] if text else type(error).__name__
