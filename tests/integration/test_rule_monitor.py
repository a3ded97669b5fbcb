"""The alert monitor evaluates every rule from `rule_counts` (issue 14), on SQLite and
PostgreSQL, with a fake clock and a real HTTP receiver on 127.0.0.1.

Posts go through `store.save_batch` (so explanations have texts) and their counts through
`rule_hits` → `add_rule_counts`, as the worker adds them with each saved batch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.alerting import Alert
from sentiment_platform.rule_spec import RuleSpec, rule_alert_type
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import Action, State
from sentiment_platform.services.alerting.rule_hits import RulesCache
from sentiment_platform.services.alerting.webhooks import SIGNATURE_HEADER, verify
from sentiment_platform.services.analysis.quantification import adjusted_shares, load_confusion
from tests.support.counted import save_counted
from tests.support.receiver import Receiver, unused_port

pytestmark = pytest.mark.asyncio

SessionFactory = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # a minute's start
SECRET = "s3cret-for-the-test"


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(seconds=30)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def setup(database: tuple[Settings, SessionFactory]) -> tuple[Settings, SessionFactory]:
    """Fast retries, loopback webhooks allowed; the built-in rule's threshold (0.6) is above
    the overall share the tests reach (half the posts negative)."""
    settings, sessions = database
    fast = settings.model_copy(
        update={
            "webhook_allow_private": True,
            "webhook_backoff_base_s": 1.0,
            "webhook_backoff_cap_s": 4.0,
            "webhook_timeout_s": 2.0,
            "alert_threshold": 0.6,
        }
    )
    return fast, sessions


async def add_rule(sessions: SessionFactory, **fields: Any) -> int:
    spec = RuleSpec.model_validate(
        {
            "name": "delivery delays",
            "keywords": ["delay"],
            "metric": "negative_share",
            "threshold": 0.5,
            "window_minutes": 5,
            "min_posts": 20,
        }
        | fields
    )
    async with sessions() as session:
        rule = await store.create_rule(session, spec, T0)
        await session.commit()
        return rule.id


async def send(
    sessions: SessionFactory,
    cache: RulesCache,
    texts: list[str],
    sentiment: Sentiment,
    analyzed_at: datetime,
) -> None:
    tag = uuid.uuid4().hex[:8]
    posts = [
        Post(post_id=f"{tag}-{i}", source="test", content=text, created_at=analyzed_at)
        for i, text in enumerate(texts)
    ]
    emotion = Emotion.ANGER if sentiment is Sentiment.NEGATIVE else Emotion.NEUTRAL
    analyses = [
        Analysis(p.post_id, sentiment, 0.9, emotion, 0.8, "test-fixture", analyzed_at)
        for p in posts
    ]
    await save_counted(sessions, posts, analyses, cache)


def delays(n: int) -> list[str]:
    return [f"Another delay with my order #{i}, so annoyed" for i in range(n)]


def unrelated(n: int) -> list[str]:
    return [f"Lovely weather in the park today {i}" for i in range(n)]


async def the_delay_burst(sessions: SessionFactory, clock: Clock) -> RulesCache:
    cache = RulesCache()
    at = clock.now - timedelta(seconds=1)
    await send(sessions, cache, delays(60), Sentiment.NEGATIVE, at)
    await send(sessions, cache, unrelated(60), Sentiment.NEUTRAL, at)
    return cache


async def test_a_keyword_rule_fires_alone_notifies_once_signed_and_explains(
    setup: tuple[Settings, SessionFactory], receiver: Receiver
) -> None:
    settings, sessions = setup
    rule_id = await add_rule(sessions, webhook_url=receiver.url(), webhook_secret=SECRET)
    clock = Clock()
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    cache = await the_delay_burst(sessions, clock)
    try:
        builtin = await monitor.check()
        fired = monitor.decisions[rule_id]
        assert fired.action is Action.FIRE and fired.state.state is State.FIRING
        assert builtin.action is None  # 60 of 120 negative: under the built-in 0.6
        assert await monitor.deliver() == 1
        clock.advance(settings.alert_check_interval_s)
        await monitor.check()
        assert monitor.decisions[rule_id].action is None  # still firing, nothing to say
        assert await monitor.deliver() == 0
    finally:
        await monitor.stop()

    (got,) = receiver.received
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
    payload = got.json
    assert payload["event"] == "fire" and payload["rule_id"] == rule_id
    assert payload["rule_name"] == "delivery delays"
    assert payload["alert_type"] == rule_alert_type(rule_id)
    assert payload["text"].startswith("[CRITICAL] delivery delays: Negative share 100%")
    assert "delay" in [term["term"] for term in payload["details"]["terms"]]
    assert len(payload["details"]["examples"]) == 5
    async with sessions() as session:
        alerts, total = await store.list_alerts(session, limit=10)
    assert total == 1 and alerts[0].rule_id == rule_id and alerts[0].rule_name == "delivery delays"
    assert alerts[0].details["total"] == 60 and alerts[0].details["share"] == 1.0

    # Neutral posts about delays bring the share down: resolved, and that is sent too.
    clock.advance(60)
    await send(sessions, cache, delays(200), Sentiment.NEUTRAL, clock.now)
    await monitor.check()
    assert monitor.decisions[rule_id].action is Action.RESOLVE
    assert await monitor.deliver() == 1
    await monitor.stop()
    assert [r.json["event"] for r in receiver.delivered()] == ["fire", "resolve"]


async def test_a_receiver_down_at_first_gets_the_notification_later(
    setup: tuple[Settings, SessionFactory],
) -> None:
    settings, sessions = setup
    later = Receiver(unused_port())  # nothing listens yet
    rule_id = await add_rule(sessions, webhook_url=later.url(), webhook_secret=SECRET)
    clock = Clock()
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    await the_delay_burst(sessions, clock)
    try:
        await monitor.check()
        assert monitor.decisions[rule_id].action is Action.FIRE
        assert await monitor.deliver() == 0  # refused: retried with backoff
        later.start()
        for _ in range(12):  # the first minute, one check interval at a time
            clock.advance(5)
            await monitor.check()
            if await monitor.deliver():
                break
    finally:
        later.stop()
        await monitor.stop()
    (got,) = later.received
    assert verify(got.body, SECRET, got.headers[SIGNATURE_HEADER])
    assert got.json["event"] == "fire" and got.json["rule_id"] == rule_id


async def test_deleting_a_rule_closes_its_incident_and_stops_its_alerts(
    setup: tuple[Settings, SessionFactory],
) -> None:
    settings, sessions = setup
    down = Receiver(unused_port()).url()  # its delivery stays pending until cancelled
    rule_id = await add_rule(sessions, webhook_url=down)
    clock = Clock()
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    cache = await the_delay_burst(sessions, clock)
    await monitor.check()
    assert monitor.decisions[rule_id].action is Action.FIRE
    alert_id = monitor.states[rule_id].alert_id
    assert alert_id is not None

    async with sessions() as session:
        assert await store.delete_rule(session, rule_id, clock.now)
        await session.commit()
    clock.advance(5)
    await send(sessions, cache, delays(60), Sentiment.NEGATIVE, clock.now)
    await monitor.check()
    assert rule_id not in monitor.decisions and rule_id not in monitor.states
    async with sessions() as session:
        alerts, total = await store.list_alerts(session, limit=10, rule_id=rule_id)
        (delivery,) = await store.alert_deliveries(session, alert_id)
        counted = await store.rule_window(session, rule_id, T0, T0 + timedelta(hours=1))
    assert total == 1 and alerts[0].state == "resolved" and alerts[0].resolved_at is not None
    assert alerts[0].details["closed"] == "the rule was deleted"
    assert delivery.done and "cancelled" in (delivery.error or "")
    assert counted.total == 0  # not counted for a deleted rule any more


async def test_a_firing_incident_of_a_rule_that_is_gone_is_closed_by_the_next_check(
    setup: tuple[Settings, SessionFactory],
) -> None:
    """A monitor that opened an incident while the rule was being deleted: the sweep."""
    settings, sessions = setup
    async with sessions() as session:
        orphan = await store.insert_firing_alert(
            session,
            alert_type=rule_alert_type(999),
            severity="warning",
            message="a rule that is gone",
            details={},
            created_at=T0,
            rule_id=999,
            rule_name="gone",
        )
        assert orphan is not None
        await session.commit()
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=Clock())
    await monitor.check()
    async with sessions() as session:
        state = await session.scalar(select(Alert.state).where(Alert.id == orphan.id))
    assert state == "resolved"


async def test_a_volume_rule_fires_on_a_spike_and_not_on_steady_traffic(
    setup: tuple[Settings, SessionFactory], receiver: Receiver
) -> None:
    settings, sessions = setup
    rule_id = await add_rule(
        sessions,
        name="outages",
        keywords=["outage"],
        metric="volume",
        threshold=3.0,
        min_posts=10,
        webhook_url=receiver.url(),
    )
    clock = Clock()
    cache = RulesCache()
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    await send(sessions, cache, ["an outage in town"] * 10, Sentiment.NEUTRAL, clock.now)
    await monitor.check()
    assert monitor.decisions[rule_id].action is None  # no history yet: no verdict

    for minutes_ago in range(1, 180):  # three hours of 4 posts a minute
        at = T0 - timedelta(minutes=minutes_ago, seconds=-10)
        await send(sessions, cache, ["is there an outage again?"] * 4, Sentiment.NEUTRAL, at)
    clock.advance(60)  # the next minute: 10 posts in the last one, 4 a minute before
    for seconds in range(0, 60, 5):
        await monitor.check()
        assert monitor.decisions[rule_id].action is None, seconds
        clock.advance(5)

    spike = [f"huge outage downtown, district {i}" for i in range(100)]
    await send(sessions, cache, spike, Sentiment.NEGATIVE, clock.now)
    await monitor.check()
    fired = monitor.decisions[rule_id]
    assert fired.action is Action.FIRE
    assert await monitor.deliver() == 1
    await monitor.stop()
    payload = receiver.delivered()[0].json
    assert payload["details"]["metric"] == "volume" and payload["details"]["share"] > 3
    assert payload["details"]["baseline"] == pytest.approx(20, abs=1)
    assert "Lovely" not in str(payload)
    assert {"huge", "downtown"} <= {term["term"] for term in payload["details"]["terms"]}


async def test_alert_on_estimated_undoes_the_models_confusion(
    setup: tuple[Settings, SessionFactory],
) -> None:
    """30 % counted negative is 21.5 % once the embedded model's confusion is undone: under
    a 0.25 threshold with ALERT_ON=estimated, over it with counted."""
    settings, sessions = setup
    confusion = load_confusion()
    assert confusion is not None
    clock = Clock()
    at = clock.now - timedelta(seconds=1)
    cache = RulesCache()
    await send(sessions, cache, unrelated(30), Sentiment.NEGATIVE, at)
    await send(sessions, cache, unrelated(70), Sentiment.NEUTRAL, at)
    threshold = {"alert_threshold": 0.25}
    estimated = settings.model_copy(update=threshold | {"alert_on": "estimated"})
    monitor = AlertMonitor(estimated, sessions, MemoryEvents(), lease=None, clock=clock)
    assert (await monitor.check()).action is None
    counted = AlertMonitor(
        settings.model_copy(update=threshold), sessions, MemoryEvents(), lease=None, clock=clock
    )
    assert counted.decisions == {} and (await counted.check()).action is Action.FIRE
    async with sessions() as session:
        alerts, _ = await store.list_alerts(session, limit=1)
        await store.update_alert(session, alerts[0].id, state="resolved", resolved_at=clock.now)
        await session.commit()

    await send(sessions, cache, unrelated(50), Sentiment.NEGATIVE, at)
    assert (await monitor.check()).action is Action.FIRE
    expected = adjusted_shares({Sentiment.NEGATIVE: 80, Sentiment.NEUTRAL: 70}, confusion)
    async with sessions() as session:
        alerts, _ = await store.list_alerts(session, limit=1)
    details = alerts[0].details
    assert details["alert_on"] == "estimated" and details["counted_share"] == round(80 / 150, 4)
    assert details["share"] == round(expected[Sentiment.NEGATIVE], 4)
