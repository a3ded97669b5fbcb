"""The review queue: which posts a person labels next.

`random` is a uniform draw over the analysed posts of a filter, so that the labels given on
it are a random sample of the feed: what quality and the estimates need. It guesses integer
keys uniformly between the smallest and the largest, keeps those that are analysed posts in
the filter (one index lookup per key), and goes on in a few rounds until it has `limit`:
every matching post is as likely as any other to be guessed, whatever the gaps between
keys, so the posts it meets come in the order of a uniformly random permutation. Its cost
grows with `limit` (and with how rare the filter's posts are), not with the table; no
statement orders the table by `random()`.

A filter too narrow for guessing (fewer than one key in MAX_KEYS / `limit` is one of its
posts) is read whole instead, when it holds at most POPULATION_MAX posts, and shuffled here:
still uniform, at a cost that grows with the filter's size. A narrow filter over a very
large table, beyond both bounds, gets fewer than `limit` posts rather than a biased draw.

A post the draw meets that is labelled already (from the uncertain queue, the posts page,
a file) is not handed out, but its draw is recorded: it was chosen at random, so its label
is a random label now, and the sample keeps the posts people chose to label first. A
skipped post is not handed out again. Every post handed out is recorded with the draw's
filter (store/review.py), so a label on it counts as random for the ranges that filter
covers.

`uncertain` hands out the least confident of the newest analysed, unlabelled posts: the
ones a model learns most from. They are recorded as such and never feed an estimate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.domain import utcnow
from sentiment_platform.store import LabelScope, PostFilter, PostItem
from sentiment_platform.store.labels import RANDOM, UNCERTAIN

MAX_KEYS = 20_000  # keys a random draw may guess, all rounds together
MAX_ROUNDS = 4
POPULATION_MAX = 200_000  # a filter this small may be read whole when guessing would miss
OVERDRAW = 1.25  # guess a quarter more keys than the hit rate says are needed
UNCERTAIN_POOL = 1_000  # `uncertain` picks from this many of the newest posts


@dataclass
class _Picker:
    """Takes candidates in the order met: the unlabelled, unskipped ones are handed out, the
    labelled ones recorded as drawn, until `limit` are handed out."""

    limit: int
    handed: list[int] = field(default_factory=list)
    met_labelled: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return len(self.handed) >= self.limit

    def take(self, candidates: Iterable[store.Candidate]) -> None:
        for ref, labelled, skipped in candidates:
            if self.full:
                return
            if ref in self.seen:
                continue
            self.seen.add(ref)
            if labelled:
                self.met_labelled.append(ref)
            elif not skipped:
                self.handed.append(ref)


async def draw_random(
    session: AsyncSession,
    scope: LabelScope,
    limit: int,
    retained_since: datetime | None = None,
    rng: random.Random | None = None,
) -> list[PostItem]:
    """Up to `limit` analysed, unlabelled posts of the scope, uniformly at random, recorded
    as drawn (the caller commits). `retained_since`: RETENTION_DAYS's cutoff, so the
    rollups' counts of deleted posts do not make a filter look larger than it is."""
    rng = rng or random.Random()
    bounds = await store.post_key_bounds(session)
    if bounds is None:
        return []
    where = PostFilter(source=scope.source, since=scope.since, until=scope.until)
    expected, _ = await store.count_matches(session, where, retained_since)  # all posts: a bound
    picker = _Picker(limit)
    low, high = bounds
    width = high - low + 1
    if expected and limit * OVERDRAW * width / expected <= MAX_KEYS:
        await _guess_keys(session, scope, picker, low, high, expected / width, rng)
    if not picker.full and expected <= POPULATION_MAX:
        rest = [c for c in await store.draw_population(session, scope) if c[0] not in picker.seen]
        rng.shuffle(rest)
        picker.take(rest)
    await store.record_draws(session, picker.handed + picker.met_labelled, RANDOM, scope, utcnow())
    return await store.items_by_refs(session, picker.handed)


async def _guess_keys(
    session: AsyncSession,
    scope: LabelScope,
    picker: _Picker,
    low: int,
    high: int,
    rate: float,
    rng: random.Random,
) -> None:
    """Rounds of uniformly guessed keys (none guessed twice) until the picker is full, the
    rounds or the keys run out. `rate` (the share of keys that yield a post to hand out)
    starts from the filter's count and is measured after each round."""
    keys = range(low, high + 1)
    guessed: set[int] = set()
    for _ in range(MAX_ROUNDS):
        budget = min(MAX_KEYS, len(keys)) - len(guessed)
        if picker.full or budget <= 0:
            return
        need = picker.limit - len(picker.handed)
        size = min(budget, max(need, math.ceil(need * OVERDRAW / max(rate, 1e-9)) + 8))
        batch = [key for key in rng.sample(keys, min(size, len(keys))) if key not in guessed]
        guessed.update(batch)
        order = {key: i for i, key in enumerate(batch)}
        found = await store.draw_candidates(session, batch, scope)
        picker.take(sorted(found, key=lambda candidate: order[candidate[0]]))
        # the rate of keys that gave a post to hand out, over every round so far
        rate = max(len(picker.handed), 0.5) / len(guessed)


async def draw_uncertain(session: AsyncSession, scope: LabelScope, limit: int) -> list[PostItem]:
    """The `limit` least confident of the UNCERTAIN_POOL newest analysed, unlabelled,
    unskipped posts of the scope, least confident first, recorded as drawn (uncertain)."""
    refs = await store.uncertain_posts(session, scope, limit, UNCERTAIN_POOL)
    await store.record_draws(session, refs, UNCERTAIN, scope, utcnow())
    return await store.items_by_refs(session, refs)
