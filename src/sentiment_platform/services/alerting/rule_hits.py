"""What the worker adds to `rule_counts` for a saved batch: rule 0 (the built-in rule) for
every analysed post, and each user rule the post matches, per minute of analysis, sentiment
and emotion (`rule_hits`, pure). `RulesCache` holds the compiled matcher between batches.

The worker calls both inside the transaction that saves the batch, for the posts that call
actually stored (a redelivered post is never counted twice)::

    pairs = stored_pairs(posts, analyses, stored)
    await store.add_rule_counts(session, rule_hits(await self.rules.matcher(session), pairs))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.domain import Analysis
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
    matcher: Matcher, posts_with_analyses: Iterable[tuple[PostLike, Analysis]]
) -> list[store.RuleHit]:
    """The counts a batch adds, aggregated and sorted (one row per rule, minute, sentiment
    and emotion)."""
    counted: Counter[tuple[int, datetime, str, str]] = Counter()
    for post, analysis in posts_with_analyses:
        minute = store.floor_minute(analysis.analyzed_at)
        sentiment, emotion = str(analysis.sentiment), str(analysis.emotion)
        counted[(BUILTIN_RULE_ID, minute, sentiment, emotion)] += 1
        for rule_id in matcher.match(post.content, post.source):
            counted[(rule_id, minute, sentiment, emotion)] += 1
    return [store.RuleHit(*key, count) for key, count in sorted(counted.items())]


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
            self._matcher = Matcher.build(
                RuleFilter(rule.id, tuple(rule.keywords), rule.source) for rule in rules
            )
            self._version = version
        return self._matcher
