"""An alert's explanation read from the store: the window's negative posts of the rule and
its posts of the previous 24 hours, narrowed to whole-word matches, then `explain`.

Bounded: each side reads at most `2 × MAX_POSTS` candidate rows (a keyword pre-filter in
SQL), newest first, and keeps at most `MAX_POSTS` matches. Computed once per fire.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.rule_spec import RuleView
from sentiment_platform.services.alerting.explain import MAX_POSTS, explain
from sentiment_platform.services.alerting.matcher import Matcher, RuleFilter

BACKGROUND = timedelta(hours=24)


async def explain_alert(
    session: AsyncSession,
    rule: RuleView,
    window_end: datetime,
    *,
    max_posts: int = MAX_POSTS,
    negative_only: bool = True,
) -> dict[str, Any]:
    """`details` for an alert of `rule` firing at `window_end`: `terms` (each `term`,
    `count`, `background_count`, `score`), `examples` (≤ 5 post ids) and the posts read.
    The window's side is its negative posts, or all of them (`negative_only=False`: what
    distinguishes a volume spike or an emotion's rise is not their negativity). Both sides
    are the posts the rule counts: of its `language`, and no copies when it is `unique` (a
    flood's copies would fill the examples with one text)."""
    start = window_end - timedelta(minutes=rule.window_minutes)
    matcher = Matcher.build([RuleFilter(rule.id, tuple(rule.keywords), rule.source)])

    async def read(since: datetime, until: datetime, negative_only: bool) -> list[tuple[str, str]]:
        rows = await store.rule_posts(
            session,
            start=since,
            end=until,
            keywords=rule.keywords,
            source=rule.source,
            negative_only=negative_only,
            limit=2 * max_posts,
            language=rule.language,
            unique=rule.unique,
        )
        kept = [(post_id, text) for post_id, text, source in rows if matcher.match(text, source)]
        return kept[:max_posts]

    window = await read(start, window_end, negative_only=negative_only)
    background = await read(start - BACKGROUND, start, negative_only=False)
    return explain(window, background, max_posts=max_posts).as_details()
