"""Save posts as the worker does once it counts rules: the posts and analyses through
`store.save_batch`, and their per-rule counts (`rule_hits` → `add_rule_counts`) in the same
transaction, for the posts that call stored."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Post
from sentiment_platform.services.alerting.matcher import EMPTY, Matcher
from sentiment_platform.services.alerting.rule_hits import RulesCache, rule_hits, stored_pairs


async def save_counted(
    session_factory: async_sessionmaker[AsyncSession],
    posts: Sequence[Post],
    analyses: Sequence[Analysis],
    matcher: Matcher | RulesCache = EMPTY,
) -> set[str]:
    async with session_factory() as session:
        stored = await store.save_batch(session, posts, analyses)
        if isinstance(matcher, RulesCache):
            matcher = await matcher.matcher(session)
        pairs = stored_pairs(posts, analyses, stored)
        await store.add_rule_counts(session, rule_hits(matcher, pairs))
        await session.commit()
    return stored
