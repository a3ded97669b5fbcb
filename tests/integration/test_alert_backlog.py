"""The alert window counts posts by when they were analysed (the minutes of `rule_counts`),
so a backlog cannot blind it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import Action, State
from tests.support.counted import save_counted

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
    await save_counted(session_factory, posts, analyses)


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


async def test_the_window_is_the_rules_last_minutes_of_analysis_time(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    """The window is the current minute of analysis and the `window − 1` before it, whatever
    the posts' `created_at`: posts analysed a minute earlier do not count."""
    settings, session_factory = database
    now = utcnow().replace(second=30, microsecond=0)
    minute = now.replace(second=0)
    oldest = minute - timedelta(minutes=settings.alert_window_minutes - 1)
    created = now - timedelta(seconds=2)
    await save(session_factory, Sentiment.NEGATIVE, 30, created, oldest - timedelta(seconds=1))
    async with session_factory() as session:
        counted = await store.rule_window(session, 0, oldest, minute + timedelta(minutes=1))
    assert counted.total == 0
    monitor = AlertMonitor(settings, session_factory, MemoryEvents(), lease=None, clock=lambda: now)
    assert (await monitor.check()).action is None  # under ALERT_MIN_POSTS: no verdict

    await save(session_factory, Sentiment.NEGATIVE, 30, now - timedelta(hours=1), oldest)
    async with session_factory() as session:
        counted = await store.rule_window(session, 0, oldest, minute + timedelta(minutes=1))
    assert counted.total == 30 and counted.sentiments == {"negative": 30}
    assert counted.emotions == {"neutral": 30}
    assert (await monitor.check()).action is Action.FIRE
