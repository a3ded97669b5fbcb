"""The alert monitor over a real store, and its Redis lease."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from sentiment_platform import store
from sentiment_platform.bus import Event
from sentiment_platform.bus.lease import RedisLease
from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.bus.redis import redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import Action, State
from tests.support.counted import save_counted

pytestmark = pytest.mark.asyncio


async def save(session_factory, sentiment: Sentiment, count: int) -> None:
    now = utcnow() - timedelta(seconds=1)
    tag = uuid.uuid4().hex[:8]
    posts = [
        Post(post_id=f"{tag}-{i}", source="test", content="x", created_at=now) for i in range(count)
    ]
    analyses = [
        Analysis(p.post_id, sentiment, 0.9, Emotion.NEUTRAL, 0.5, "test-fixture", now)
        for p in posts
    ]
    await save_counted(session_factory, posts, analyses)


async def test_a_new_monitor_resumes_the_open_incident(tmp_path: Path) -> None:
    """A failover (a fresh monitor, same store) updates the firing row, never opens another."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'monitor.db'}",
        alert_repeat_minutes=0.0001,  # re-notify at every check
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    session_factory = create_session_factory(engine)
    events = MemoryEvents()
    published = events.subscribe()
    try:
        await save(session_factory, Sentiment.NEGATIVE, 30)
        first = AlertMonitor(settings, session_factory, events, lease=None)
        assert (await first.check()).action is Action.FIRE
        fired: Event = await asyncio.wait_for(anext(published), 1)
        assert fired.type == "alert" and fired.data["state"] == "firing"

        second = AlertMonitor(settings, session_factory, events, lease=None)  # the next leader
        await asyncio.sleep(0.01)
        decision = await second.check()
        assert decision.action is Action.RENOTIFY and decision.state.alert_id == fired.data["id"]
        renotified = await asyncio.wait_for(anext(published), 1)
        assert renotified.data["id"] == fired.data["id"]
        assert renotified.data["details"]["notifications"] == 2

        await save(session_factory, Sentiment.POSITIVE, 300)
        assert (await second.check()).action is Action.RESOLVE
        resolved = await asyncio.wait_for(anext(published), 1)
        assert resolved.data["id"] == fired.data["id"] and resolved.data["state"] == "resolved"
        assert second.state is not None and second.state.state is State.RESOLVED

        async with session_factory() as session:
            alerts, total = await store.list_alerts(session, limit=10)
        assert total == 1 and alerts[0].resolved_at is not None
    finally:
        await engine.dispose()


@pytest.mark.redis
async def test_redis_lease_one_owner_renewal_expiry_and_release() -> None:
    client = redis_client(Settings(_env_file=None, redis_host="127.0.0.1"))  # type: ignore[call-arg]
    key = f"test_lease_{uuid.uuid4().hex}"
    a, b = RedisLease(client, key, 0.3), RedisLease(client, key, 0.3)
    try:
        assert await a.hold() and not await b.hold()
        b.held = True  # even if b wrongly believes it owns the lease...
        await b.release()  # ...its release deletes only its own token: nothing happens
        assert await a.hold()  # renewed, still ours
        await asyncio.sleep(0.45)  # a stops renewing: its lease expires
        assert await b.hold()
        assert not await a.hold()  # renewal refused, and the key is b's
        await b.release()
        assert await a.hold()
        await a.release()
        assert await client.exists(key) == 0
    finally:
        await client.aclose()
