"""Rescoring history: stored posts re-analysed by another model, while live traffic goes on.

`rescore` walks the posts of a scope by id in bounded batches. Each batch is read in a short
session, analysed outside any transaction (no lock is held while the model runs), and
written in ONE transaction that rewrites the analyses and moves every count they feed: the
post rollups and model rollups (`store.relabel`) and the alert rules' counts
(`store.move_rule_counts`). A kill loses at most the batch in flight, whose transaction
never commits.

Resuming needs no saved state: the walk takes only posts whose stored `model` is not the
target's name, so a second run continues where the first stopped, and a post the live
workers analysed with the target model while this runs is never analysed twice. A post
that changed between the read and the write is left as the other writer left it (the
store's guarded UPDATE).

Routing holds here as in the worker: a post is relabelled only by a model registered for its
language (`analyze_languages`); a post the model may not read is left as it is and counted
`unreadable`. A post stored before languages were detected (language null) is read as
before, by the `*` models.

`analyzed_at` is kept: it is when the post was first analysed, the minute its rule counts
live in. A new time would move the counts into the current minutes and fire alerts on old
posts. `model` says which model gave the labels.

Which analyzer and which name are the caller's: the CLI passes the model it loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Prediction, utcnow
from sentiment_platform.rule_spec import MAX_WINDOW_MINUTES
from sentiment_platform.services.alerting.rule_hits import CountedRule, rule_filter, rule_moves
from sentiment_platform.services.analysis.backends import Analyzer, analyze_languages

log = logging.getLogger(__name__)

BATCH = 500
PROBE_TEXT = "ok"  # tells an analyzer that is down from a post it cannot take
WRITE_TRIES = 3  # a deadlock or serialisation failure (SQLSTATE class 40) is tried again


class AnalyzerDown(RuntimeError):
    """The analyzer fails even on a harmless text: the run stops, to be run again."""


@dataclass(slots=True)
class Rescored:
    """What a run did."""

    posts: int = 0  # relabelled
    meanwhile: int = 0  # changed or deleted by another writer between read and write: left
    failed: int = 0  # the analyzer refused them one by one: left as they were
    other_model: int = 0  # relabelled under another model's name (a fallback): left to redo
    unreadable: int = 0  # in a language the model is not registered for: left as they were
    batches: int = 0


async def answering_model(analyzer: Analyzer) -> str:
    """The name an analyzer's labels carry (the `model` a rescore aims at): what it says
    of a harmless text."""
    try:
        [prediction] = await analyzer.analyze([PROBE_TEXT])
    except Exception as error:
        raise AnalyzerDown(f"the analyzer cannot label a text: {error}") from error
    return prediction.model


async def remaining(
    session_factory: async_sessionmaker[AsyncSession], model: str, scope: store.Scope
) -> int:
    """Posts of the scope not labelled by `model` yet."""
    async with session_factory() as session:
        return await store.count_to_rescore(session, scope, model)


async def rescore(
    session_factory: async_sessionmaker[AsyncSession],
    analyzer: Analyzer,
    model: str,
    scope: store.Scope | None = None,
    *,
    batch_size: int = BATCH,
    on_batch: Callable[[int], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Rescored:
    """Relabel every post of the scope not labelled by `model` with `analyzer`'s answers
    (whose `model` is expected to be `model`); `on_batch(n)` after each batch of n posts
    walked."""
    scope = scope or store.Scope()
    done = Rescored()
    after = 0
    while True:
        async with session_factory() as session:
            batch = await store.posts_to_rescore(session, scope, model, after, batch_size)
        if not batch:
            return done
        after = batch[-1].id
        texts = [post.content for post in batch]
        predictions = await _predict(analyzer, texts, [post.language for post in batch])
        pairs = [
            (post, prediction)
            for post, prediction in zip(batch, predictions, strict=True)
            if isinstance(prediction, Prediction)
        ]
        unreadable = sum(1 for prediction in predictions if prediction is Outcome.UNREAD)
        changed = await _write(session_factory, pairs, now())
        done.batches += 1
        done.posts += len(changed)
        done.meanwhile += len(pairs) - len(changed)
        done.unreadable += unreadable
        done.failed += len(batch) - len(pairs) - unreadable
        done.other_model += sum(1 for _, prediction in changed if prediction.model != model)
        if on_batch is not None:
            on_batch(len(batch))


async def _write(
    session_factory: async_sessionmaker[AsyncSession],
    pairs: Sequence[tuple[store.Labelled, Prediction]],
    at: datetime,
) -> list[tuple[store.Labelled, Prediction]]:
    """One transaction: the analyses rewritten, the rollups and the rule counts moved."""
    if not pairs:
        return []
    counted_since = store.floor_minute(at) - store.BASELINE - timedelta(minutes=MAX_WINDOW_MINUTES)
    for attempt in range(1, WRITE_TRIES + 1):
        try:
            async with session_factory() as session, session.begin():
                changed = await store.relabel(session, pairs)
                stored_rules = await store.list_rules(session)
                rules = [CountedRule(rule_filter(r), r.updated_at) for r in stored_rules]
                await store.move_rule_counts(session, rule_moves(rules, changed, counted_since))
                return changed
        except DBAPIError as error:
            sqlstate = str(getattr(error.orig, "sqlstate", ""))
            if not sqlstate.startswith("40") or attempt == WRITE_TRIES:
                raise
            log.warning(
                "rescore batch retried",
                extra={"event": "rescore.retried", "sqlstate": sqlstate, "attempt": attempt},
            )
    raise AssertionError("unreachable")  # the last attempt returns or raises


class Outcome(Enum):
    """Why a post got no prediction."""

    UNREAD = "no model it may use reads its language"
    REFUSED = "the analyzer refuses it"


async def _predict(
    analyzer: Analyzer, texts: list[str], languages: list[str | None]
) -> list[Prediction | Outcome]:
    """One prediction per text; REFUSED for a text the analyzer refuses alone (found by
    halving the batch), so one bad post costs its own place, not its batch's, and UNREAD
    for one in a language no model it may use reads. An analyzer that fails on a harmless
    text too is down: `AnalyzerDown` stops the run."""
    try:
        predictions = await analyze_languages(analyzer, texts, languages)
        if len(predictions) != len(texts):
            raise ValueError(f"{len(predictions)} predictions for {len(texts)} texts")
        return [Outcome.UNREAD if p is None else p for p in predictions]
    except Exception as error:
        try:
            await answering_model(analyzer)
        except AnalyzerDown as down:
            raise down from error
        if len(texts) == 1:
            log.warning(
                "rescore skipped a post the analyzer refuses",
                extra={"event": "rescore.refused", "error": f"{type(error).__name__}: {error}"},
            )
            return [Outcome.REFUSED]
    middle = len(texts) // 2
    first = await _predict(analyzer, texts[:middle], languages[:middle])
    return first + await _predict(analyzer, texts[middle:], languages[middle:])
