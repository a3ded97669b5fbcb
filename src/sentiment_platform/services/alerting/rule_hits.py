"""What the worker adds to `rule_counts` for a saved batch: rule 0 (the built-in rule) for
every analysed post (copies and every language included), and each user rule the post
matches (its keywords, source, language, and no copy for a `unique` rule), per minute of
analysis, sentiment and emotion (`rule_hits`, pure). A post no model read has no sentiment
and is in no count. `RulesCache` holds the compiled matcher between batches.

The worker calls both inside the transaction that saves the batch, for the posts that call
actually stored (a redelivered post is never counted twice)::

    pairs = stored_pairs(posts, analyses, stored)
    hits = rule_hits(await self.rules.matcher(session), pairs, marks)
    await store.add_rule_counts(session, hits)

A rescore moves the counts of the posts it relabels (`rule_moves`, pure) in the transaction
that rewrites them (`store.move_rule_counts`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.domain import Analysis, PostMarks, Prediction
from sentiment_platform.rule_spec import BUILTIN_RULE_ID
from sentiment_platform.services.alerting.matcher import EMPTY, Matcher, RuleFilter


class PostLike(Protocol):
    @property
    def content(self) -> str: ...

    @property
    def source(self) -> str: ...


P = TypeVar("P", bound=PostLike)


def stored_pairs(
    posts: Sequence[P], analyses: Sequence[Analysis], stored: Collection[str]
) -> list[tuple[P, Analysis]]:
    """(post, analysis) of each post `save_batch` stored, once (a post twice in a batch is
    stored once, so counted once)."""
    seen: set[str] = set()
    pairs = []
    for post, analysis in zip(posts, analyses, strict=True):
        if analysis.post_id in stored and analysis.post_id not in seen:
            seen.add(analysis.post_id)
            pairs.append((post, analysis))
    return pairs


def rule_hits(
    matcher: Matcher,
    posts_with_analyses: Iterable[tuple[PostLike, Analysis]],
    marks: Mapping[str, PostMarks] | None = None,
) -> list[store.RuleHit]:
    """The counts a batch adds, aggregated and sorted (one row per rule, minute, sentiment
    and emotion). `marks`: each post's language and copy mark (none: not detected)."""
    counted: Counter[tuple[int, datetime, str, str]] = Counter()
    marks = marks or {}
    for post, analysis in posts_with_analyses:
        minute = store.floor_minute(analysis.analyzed_at)
        sentiment, emotion = str(analysis.sentiment), str(analysis.emotion)
        counted[(BUILTIN_RULE_ID, minute, sentiment, emotion)] += 1
        mark = marks.get(analysis.post_id)
        language = mark.language if mark is not None else None
        copy = mark is not None and mark.duplicate_of is not None
        for rule_id in matcher.match(post.content, post.source, language, copy):
            counted[(rule_id, minute, sentiment, emotion)] += 1
    return [store.RuleHit(*key, count) for key, count in sorted(counted.items())]


class Relabelled(PostLike, Protocol):
    """A post a rescore rewrote, as it was before: its old labels and when it was analysed."""

    @property
    def sentiment(self) -> str: ...

    @property
    def emotion(self) -> str: ...

    @property
    def analyzed_at(self) -> datetime: ...

    @property
    def language(self) -> str | None: ...

    @property
    def duplicate_of(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CountedRule:
    """A user rule as a rescore sees it: since when it has matched as it does now."""

    filter: RuleFilter
    since: datetime  # its last change (`updated_at`): earlier posts may have been matched otherwise


def rule_moves(
    rules: Sequence[CountedRule],
    relabelled: Iterable[tuple[Relabelled, Prediction]],
    counted_since: datetime,
) -> Counter[store.Move]:
    """What `rule_counts` must move for posts a rescore relabelled: each of the post's rule
    hits, in the minute it was analysed (a rescore keeps `analyzed_at`), from its old
    (sentiment, emotion) to its new one.

    Only posts analysed since `counted_since` move: older minutes are pruned, and no rule
    reads them. A user rule counts only posts analysed after its last change: the matcher
    that counted an older post may have been another (`store.move_rule_counts` also never
    takes more than a cell holds)."""
    matcher = Matcher.build(rule.filter for rule in rules)
    since = {rule.filter.rule_id: rule.since for rule in rules}
    moves: Counter[store.Move] = Counter()
    for post, new in relabelled:
        if post.analyzed_at < counted_since:
            continue
        minute = store.floor_minute(post.analyzed_at)
        labels = (post.sentiment, post.emotion, new.sentiment.value, new.emotion.value)
        if labels[:2] == labels[2:]:
            continue
        moves[(BUILTIN_RULE_ID, minute, *labels)] += 1
        copy = post.duplicate_of is not None
        for rule_id in matcher.match(post.content, post.source, post.language, copy):
            if since[rule_id] <= post.analyzed_at:
                moves[(rule_id, minute, *labels)] += 1
    return moves


def rule_filter(rule: Any) -> RuleFilter:
    """What the matcher needs of a stored rule (an `AlertRule` row)."""
    return RuleFilter(rule.id, tuple(rule.keywords), rule.source, rule.language, rule.unique)


class RulesCache:
    """The matcher over every user rule, rebuilt when the rules' version in the store moved
    (`store.rules_version`, read in the worker's save transaction): a rule created, changed
    or deleted applies from the next batch a worker saves, in every worker, with no message
    to miss."""

    def __init__(self) -> None:
        self._matcher: Matcher = EMPTY
        self._version: store.RulesVersion | None = None

    async def matcher(self, session: AsyncSession) -> Matcher:
        """The current matcher; the rules are read again only when their version moved."""
        version = await store.rules_version(session)
        if version != self._version:
            rules = await store.list_rules(session)
            self._matcher = Matcher.build(rule_filter(rule) for rule in rules)
            self._version = version
        return self._matcher
