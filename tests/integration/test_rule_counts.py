"""`rule_counts` on SQLite and PostgreSQL: upserts add up, concurrent writers in any order do
not deadlock, the window and the 24 h baseline read what was counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import utcnow
from sentiment_platform.models.alerting import RuleCount
from sentiment_platform.store import RuleHit
from tests.support.databases import LazyPostgres

pytestmark = pytest.mark.asyncio

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_counts_add_up_and_the_window_reads_them(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    _, sessions = database
    hits = [RuleHit(1, T0 + timedelta(seconds=s), "negative", "anger") for s in range(0, 120, 10)]
    hits += [RuleHit(1, T0, "neutral", "joy", 3), RuleHit(2, T0, "negative", "anger", 9)]
    async with sessions() as session:
        assert await store.add_rule_counts(session, hits) == 4  # rows, keys merged
        await store.add_rule_counts(session, [RuleHit(1, T0, "negative", "anger", 4)])
        await session.commit()
    async with sessions() as session:
        first = await store.rule_window(session, 1, T0, T0 + timedelta(minutes=1))
        both = await store.rule_window(session, 1, T0, T0 + timedelta(minutes=2))
    assert first.sentiments == {"negative": 10, "neutral": 3} and first.total == 13
    assert first.emotions == {"anger": 10, "joy": 3}
    assert both.total == 19


@pytest.mark.postgres
async def test_writers_in_any_order_do_not_deadlock(postgres: LazyPostgres) -> None:
    """Six transactions upsert the same 40 keys, half given them in reverse: sorted inside
    `add_rule_counts`, every writer locks them in one order, so none deadlocks."""
    engine = await postgres.get()
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    base = 1_000_000  # rule ids no other test uses; deleted afterwards
    keys = [RuleHit(base + rule, T0, "negative", "anger") for rule in range(40)]

    async def write(hits: list[RuleHit]) -> None:
        async with sessions() as session:
            await store.add_rule_counts(session, hits)
            await asyncio.sleep(0.01)  # hold the locks a while
            await session.commit()

    try:
        await asyncio.gather(*(write(keys if n % 2 else keys[::-1]) for n in range(6)))
        async with sessions() as session:
            counted = await store.rule_window(session, base + 17, T0, T0 + timedelta(minutes=1))
        assert counted.total == 6
    finally:
        async with sessions() as session:
            await session.execute(delete(RuleCount).where(RuleCount.rule_id >= base))
            await session.commit()


async def test_the_volume_baseline_is_the_average_per_window_since_the_first_count(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    _, sessions = database
    start = T0 + timedelta(hours=30)
    async with sessions() as session:
        assert await store.rule_volume_baseline(session, 3, 5, start) is None
        older = [RuleHit(3, start - timedelta(hours=25), "neutral", "joy", 1000)]  # too old
        steady = [
            RuleHit(3, start - timedelta(minutes=m), "neutral", "joy", 2) for m in range(1, 61)
        ]
        await store.add_rule_counts(session, older + steady)
        await session.commit()
        assert await store.rule_volume_baseline(session, 3, 5, start) == pytest.approx(10.0)
        new = [RuleHit(4, start - timedelta(minutes=3), "neutral", "joy", 7)]
        await store.add_rule_counts(session, new)
        assert await store.rule_volume_baseline(session, 4, 5, start) is None  # < a window
        assert await store.prune_rule_counts(session, start - timedelta(hours=24)) == 1


async def test_the_worker_matcher_follows_rule_changes_from_its_next_batch(
    database: tuple[Settings, async_sessionmaker[AsyncSession]],
) -> None:
    """Create, change, delete: the cache reads the rules again exactly then, no sooner."""
    from sentiment_platform.rule_spec import RuleSpec
    from sentiment_platform.services.alerting.rule_hits import RulesCache

    _, sessions = database
    cache = RulesCache()
    async with sessions() as session, session.begin():
        assert (await cache.matcher(session)).match("a delay again", "forum") == frozenset()
        rule = await store.create_rule(
            session, RuleSpec(name="d", keywords=["delay"], threshold=0.5), utcnow()
        )
    async with sessions() as session, session.begin():
        assert (await cache.matcher(session)).match("a delay again", "forum") == {rule.id}
        stored = await store.get_rule(session, rule.id)
        assert stored is not None
        spec = RuleSpec(name="d", keywords=["refund"], threshold=0.5)
        await store.update_rule(session, stored, spec, utcnow())
    async with sessions() as session, session.begin():
        matcher = await cache.matcher(session)
        assert matcher.match("a delay again", "forum") == frozenset()
        assert matcher.match("no refund yet", "forum") == {rule.id}
        assert await store.delete_rule(session, rule.id, utcnow())
    async with sessions() as session, session.begin():
        assert (await cache.matcher(session)).match("no refund yet", "forum") == frozenset()
