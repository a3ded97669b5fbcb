"""The alert window counts posts by when they were analysed, so a backlog cannot blind it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus import MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.services.alerting import Action, AlertMonitor, State

pytestmark = pytest.mark.asyncio


async def save(
    session_factory: async_sessionmaker[AsyncSession],
    sentiment: Sentiment,
    count: int,
    created_at: datetime,
    analyzed_at: datetime,
) -> None:
    tag = uuid.uuid4().hex[:8]
    posts = [
        Post(post_id=f"{tag}-{i}", source="test", content="x", created_at=created_at)
        for i in range(count)
    ]
    analyses = [
        Analysis(p.post_id, sentiment, 0.9, Emotion.NEUTRAL, 0.5, "test-fixture", analyzed_at)
        for p in posts
    ]
    async with session_factory() as session:
        await store.save_batch(session, posts, analyses)
        await session.commit()


async def test_a_ten_minute_backlog_of_negative_posts_fires_at_the_first_check(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    """Workers ran 10+ minutes behind a negative burst: the posts were created before the
    5-minute window, analysed just now. The first check after them fires."""
    settings, session_factory = database
    now = utcnow()
    assert settings.alert_window_minutes == 5
    backlog = now - timedelta(minutes=10)
    await save(session_factory, Sentiment.NEGATIVE, 30, backlog, now - timedelta(seconds=1))
    await save(session_factory, Sentiment.POSITIVE, 10, backlog, now - timedelta(seconds=1))
    monitor = AlertMonitor(settings, session_factory, MemoryEvents(), lease=None, clock=lambda: now)

    decision = await monitor.check()

    assert decision.action is Action.FIRE and decision.state.state is State.FIRING
    async with session_factory() as session:
        alerts, total = await store.list_alerts(session, limit=10)
    assert total == 1 and alerts[0].details["total"] == 40 and alerts[0].details["negative"] == 30


async def test_posts_analysed_before_the_window_do_not_count_even_if_created_in_it(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    settings, session_factory = database
    now = utcnow()
    stale = now - timedelta(minutes=settings.alert_window_minutes, seconds=1)
    await save(session_factory, Sentiment.NEGATIVE, 30, now - timedelta(seconds=2), stale)
    await save(session_factory, Sentiment.NEGATIVE, 30, now, now)  # at `now`: window is [.., now)
    async with session_factory() as session:
        counts = await store.count_window(session, now - timedelta(minutes=5), now)
    assert counts == {}
    monitor = AlertMonitor(settings, session_factory, MemoryEvents(), lease=None, clock=lambda: now)
    assert (await monitor.check()).action is None  # under ALERT_MIN_POSTS: no verdict
