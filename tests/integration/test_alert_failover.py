"""At most one firing alert per type, whatever the monitors believe: the partial unique index,
ON CONFLICT adoption, and a lease renewed right before each write."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus.lease import RedisLease
from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.bus.redis import redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment, utcnow
from sentiment_platform.models.alerting import Alert
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import ALERT_TYPE, Action
from tests.support.counted import save_counted
from tests.support.databases import recreate_postgres_database, scratch_database_url

pytestmark = pytest.mark.asyncio

SessionFactory = async_sessionmaker[AsyncSession]


async def save_negative(session_factory: SessionFactory, count: int = 30) -> None:
    now = utcnow() - timedelta(seconds=1)
    tag = uuid.uuid4().hex[:8]
    posts = [
        Post(post_id=f"{tag}-{i}", source="test", content="x", created_at=now) for i in range(count)
    ]
    analyses = [
        Analysis(p.post_id, Sentiment.NEGATIVE, 0.9, Emotion.ANGER, 0.5, "test-fixture", now)
        for p in posts
    ]
    await save_counted(session_factory, posts, analyses)


async def firing_rows(session_factory: SessionFactory) -> list[int]:
    async with session_factory() as session:
        rows = await session.scalars(select(Alert.id).where(Alert.state == "firing"))
        return list(rows)


def firing(n: int, alert_type: str = ALERT_TYPE, state: str = "firing") -> Alert:
    return Alert(
        alert_type=alert_type,
        message=f"incident {n}",
        severity="warning",
        state=state,
        details={},
        created_at=utcnow(),
    )


async def test_the_database_refuses_a_second_firing_row(
    database: tuple[Settings, SessionFactory],
) -> None:
    _, session_factory = database
    async with session_factory() as session:
        # Resolved incidents of the type, and a firing one of another type, are fine.
        session.add_all([firing(1, state="resolved"), firing(2, state="resolved")])
        session.add_all([firing(3), firing(4, alert_type="other_spike")])
        await session.commit()
    async with session_factory() as session:
        session.add(firing(5))
        with pytest.raises(IntegrityError):
            await session.commit()
    async with session_factory() as session:
        kept = await store.insert_firing_alert(
            session,
            alert_type=ALERT_TYPE,
            severity="critical",
            message="a second incident",
            details={},
            created_at=utcnow(),
        )
        assert kept is None  # ON CONFLICT DO NOTHING: no row, no error
        count = await session.scalar(
            select(func.count()).select_from(Alert).where(Alert.alert_type == ALERT_TYPE)
        )
        assert count == 3


async def test_a_monitor_that_meets_another_firing_row_adopts_it(
    database: tuple[Settings, SessionFactory],
) -> None:
    """Two monitors that both believe they lead (a stale leader): one row, one announcement."""
    settings, session_factory = database
    events = MemoryEvents()
    published = events.subscribe()
    a = AlertMonitor(settings, session_factory, events, lease=None)
    b = AlertMonitor(settings, session_factory, events, lease=None)
    assert (await b.check()).action is None  # b loads "ok" while the window is quiet
    await save_negative(session_factory)

    fired = await a.check()
    stale = await b.check()  # b still believes nothing fires: its insert meets a's row

    assert fired.action is Action.FIRE and fired.state.alert_id is not None
    assert stale.action is None and stale.state.alert_id == fired.state.alert_id
    assert b.state is not None and b.state.alert_id == fired.state.alert_id
    assert await firing_rows(session_factory) == [fired.state.alert_id]
    assert (await asyncio.wait_for(anext(published), 1)).data["id"] == fired.state.alert_id
    with pytest.raises(TimeoutError):  # b announced nothing
        await asyncio.wait_for(anext(published), 0.2)


@pytest.mark.postgres
async def test_monitors_racing_on_postgresql_open_one_incident() -> None:
    """Four monitors check at the same instant, each on its own connection."""
    url = scratch_database_url("alert_race")
    await recreate_postgres_database(url)
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    engine = create_engine(settings)
    try:
        await upgrade_schema(engine)
        session_factory = create_session_factory(engine)
        await save_negative(session_factory)
        events = MemoryEvents()
        monitors = [AlertMonitor(settings, session_factory, events, lease=None) for _ in range(4)]
        decisions = await asyncio.gather(*(m.check() for m in monitors))
        fired = [d for d in decisions if d.action is Action.FIRE]
        assert len(fired) == 1
        assert {d.state.alert_id for d in decisions} == {fired[0].state.alert_id}
        assert await firing_rows(session_factory) == [fired[0].state.alert_id]
    finally:
        await engine.dispose()
        await recreate_postgres_database(url, create=False)


@pytest.mark.redis
async def test_a_monitor_that_lost_its_lease_before_writing_writes_nothing(
    tmp_path: Path,
) -> None:
    """a's lease expires during its check and b takes it: a's renewal right before the
    write fails, so only b's incident is stored and announced."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'lease.db'}",
    )
    engine = create_engine(settings)
    client = redis_client(Settings(_env_file=None, redis_host="127.0.0.1"))  # type: ignore[call-arg]
    key = f"test_alert_lease_{uuid.uuid4().hex}"
    lease_a, lease_b = RedisLease(client, key, 0.3), RedisLease(client, key, 0.3)
    try:
        await upgrade_schema(engine)
        session_factory = create_session_factory(engine)
        events = MemoryEvents()
        published = events.subscribe()
        a = AlertMonitor(settings, session_factory, events, lease=lease_a)
        b = AlertMonitor(settings, session_factory, events, lease=lease_b)
        await save_negative(session_factory)
        assert await lease_a.hold() and not await lease_b.hold()
        assert a.is_leader and not b.is_leader

        await asyncio.sleep(0.45)  # a stalls past its TTL (a slow statement, a pool wait)
        assert await lease_b.hold()  # ... and b takes over
        lost = await a.check()  # a still believes it leads until its pre-write renewal

        assert lost.action is None and not a.is_leader and a.state is None
        assert await firing_rows(session_factory) == []
        fired = await b.check()
        assert fired.action is Action.FIRE
        assert await firing_rows(session_factory) == [fired.state.alert_id]
        assert (await asyncio.wait_for(anext(published), 1)).data["id"] == fired.state.alert_id
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(published), 0.2)
    finally:
        await lease_b.release()
        await client.aclose()
        await engine.dispose()
