"""`ALERT_ON=estimated` watches the estimate (issue 30), on SQLite and PostgreSQL: with
MIN_ESTIMATE_LABELS random labels on the scoring model's predictions, the built-in alert's
share is the labels' estimate, which fires where the counted share (and the shipped
matrix's figure) would not; with fewer, the shipped matrix as before; the details say which."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from sentiment_platform import store
from sentiment_platform.bus.memory import MemoryEvents
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.services.alerting.monitor import AlertMonitor
from sentiment_platform.services.alerting.policy import Action
from sentiment_platform.services.alerting.rule_hits import RulesCache
from sentiment_platform.services.analysis.estimation import stratified_estimate
from tests.integration.test_rule_monitor import Clock, send, unrelated

pytestmark = pytest.mark.asyncio

N, U = Sentiment.NEGATIVE, Sentiment.NEUTRAL
MODEL = "test-fixture"  # what `send` stores, so the newest analysis's model
# (label, prediction) × count: the model calls half the negative posts neutral
LABELLED = {(N, N): 10, (N, U): 15, (U, U): 15}


async def _random_labels(sessions, days_ago: int) -> None:
    """Labelled posts of MODEL, analysed `days_ago` days before T0, then drawn at random."""
    at = Clock().now - timedelta(days=days_ago)
    posts, analyses = [], []
    for (label, prediction), count in LABELLED.items():
        for _ in range(count):
            post_id = f"lab-{uuid.uuid4().hex[:10]}"
            posts.append(Post(post_id=post_id, source="test", content=post_id, created_at=at,
                              label=label.value))  # fmt: skip
            analyses.append(Analysis(post_id, prediction, 0.9, Emotion.NEUTRAL, 0.8, MODEL, at))
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses)
        ids = {post.post_id for post in posts}
        refs = await session.scalars(
            select(SocialMediaPost.id).where(SocialMediaPost.post_id.in_(ids))
        )
        await store.record_draws(session, list(refs), "random", store.LabelScope(), at)


async def _window_counted_at_40(database, labels_days_ago: int):
    """`ALERT_ON=estimated` at 0.55 over 40 labels, those labels made `labels_days_ago`
    days back, and a window of 40 negative and 60 neutral posts (counted: 40 %)."""
    settings, sessions = database
    clock = Clock()
    settings = settings.model_copy(
        update={"alert_threshold": 0.55, "alert_on": "estimated", "min_estimate_labels": 40}
    )
    await _random_labels(sessions, days_ago=labels_days_ago)
    at = clock.now - timedelta(seconds=1)
    cache = RulesCache()
    await send(sessions, cache, unrelated(40), N, at)
    await send(sessions, cache, unrelated(60), U, at)
    return settings, sessions, clock


async def test_the_estimate_fires_where_the_count_would_not(database) -> None:
    settings, sessions, clock = await _window_counted_at_40(database, labels_days_ago=2)

    counted = AlertMonitor(
        settings.model_copy(update={"alert_on": "counted"}), sessions, MemoryEvents(), None, clock
    )
    assert (await counted.check()).action is None
    too_few = settings.model_copy(update={"min_estimate_labels": 41})
    shipped = AlertMonitor(too_few, sessions, MemoryEvents(), lease=None, clock=clock)
    assert (await shipped.check()).action is None  # the shipped matrix's figure is lower

    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    assert (await monitor.check()).action is Action.FIRE
    async with sessions() as session:
        alerts, _ = await store.list_alerts(session, limit=1)
    details = alerts[0].details
    confusion = [[LABELLED.get((label, prediction), 0) for prediction in Sentiment]
                 for label in Sentiment]  # fmt: skip
    counts = {N: 40, U: 60}
    expected = stratified_estimate([counts.get(s, 0) for s in Sentiment], confusion, n_min=40)
    assert expected.shares is not None
    negative = expected.shares[list(Sentiment).index(N)]
    assert negative == pytest.approx(0.4 + 0.6 * 0.5)  # each predicted class split by its labels
    assert details["share"] == round(negative, 4) and details["counted_share"] == 0.4
    assert details["estimate_method"] == "stratified"
    assert details["estimate_labels"] == 40 and details["estimate_model"] == MODEL


async def test_labels_older_than_the_reference_are_not_used(database) -> None:
    settings, sessions, clock = await _window_counted_at_40(database, labels_days_ago=31)
    monitor = AlertMonitor(settings, sessions, MemoryEvents(), lease=None, clock=clock)
    assert (await monitor.check()).action is None
