"""Rescoring history (issue 32) on SQLite and PostgreSQL: posts analysed by the keyword rule
(model A) re-analysed by the length rule (model B). Every post of the scope ends with B's
labels on its row and its analysis row, and the post rollups, model rollups and rule counts
equal what a rebuild and a recount from the posts give — after a full run, a partial one, a
run killed midway and run again, and runs that meet live writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import Prediction, utcnow
from sentiment_platform.models.database import ModelRollup, PostRollup, UTCDateTime
from sentiment_platform.rule_spec import RuleSpec
from sentiment_platform.services.analysis.rescore import AnalyzerDown, Rescored, rescore
from sentiment_platform.services.reporting.aggregator import compute_metrics
from sentiment_platform.services.retention import purge_once
from sentiment_platform.store import Scope, rollups
from tests.support.pipeline import KeywordAnalyzer
from tests.support.rescoring import (
    LengthAnalyzer,
    assert_counts_match_the_posts,
    counts,
    make_posts,
    save_analysed,
    stored_labels,
)

pytestmark = pytest.mark.asyncio

A, B = KeywordAnalyzer.model, LengthAnalyzer.model


class Meanwhile(LengthAnalyzer):
    """Model B that runs `hook` (a live write) while it analyses its first batch."""

    def __init__(self, hook: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.hook: Callable[[], Awaitable[None]] | None = hook

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        hook, self.hook = self.hook, None
        if hook is not None:
            await hook()
        return await super().analyze(texts)


class OtherModel(LengthAnalyzer):
    model = "test-other-rule"


async def _store(sessions, count: int = 60, every: timedelta = timedelta(minutes=67)):
    """A rule on 'terrible' (made before anything was analysed), then `count` posts over
    three days analysed by A an hour ago, their rule counts with them."""
    now = utcnow()
    async with sessions() as session, session.begin():
        spec = RuleSpec(name="bad", keywords=["terrible"], threshold=0.5)
        await store.create_rule(session, spec, now - timedelta(hours=2))
    posts = make_posts(count, now - timedelta(days=4), every=every)
    await save_analysed(sessions, posts, KeywordAnalyzer(), now - timedelta(hours=1))
    return posts, now


def _expected(posts, model: LengthAnalyzer | KeywordAnalyzer) -> dict[str, tuple]:
    labels = {}
    for post in posts:
        if isinstance(model, LengthAnalyzer):
            found = model.label(post.content)
        else:
            found = model._label(post.content.lower())
        labels[post.post_id] = (found.sentiment.value, found.emotion.value, model.model)
    return labels


async def _models(sessions, start, end, source=None) -> dict[str, int]:
    async with sessions() as session:
        return (await compute_metrics(session, start, end, source=source)).models


async def test_a_rescore_relabels_every_post_and_moves_every_count(database) -> None:
    _, sessions = database
    posts, now = await _store(sessions)
    before = await assert_counts_match_the_posts(sessions)
    assert await _models(sessions, now - timedelta(days=5), now) == {A: 60}

    model = LengthAnalyzer()
    assert await rescore(sessions, model, B, batch_size=7) == Rescored(posts=60, batches=9)

    async with sessions() as session:
        assert await stored_labels(session) == _expected(posts, model)
        kept = await session.execute(
            text("SELECT DISTINCT analyzed_at FROM sentiment_analysis").columns(
                analyzed_at=UTCDateTime()
            )
        )
        assert list(kept.scalars()) == [now - timedelta(hours=1)]  # analysed_at is kept
    after = await assert_counts_match_the_posts(sessions)
    assert after["rule_counts"] != before["rule_counts"]  # the counts moved with the labels
    assert await _models(sessions, now - timedelta(days=5), now) == {B: 60}
    # Nothing is left to do: a second run reads and writes nothing.
    assert await rescore(sessions, LengthAnalyzer(), B) == Rescored()


async def test_since_until_and_source_limit_what_is_touched(database, api) -> None:
    _, sessions = database
    posts, now = await _store(sessions)
    scope = Scope(since=posts[20].created_at, until=posts[50].created_at, source="twitter")
    touched = {post.post_id for post in posts[20:50] if post.source == "twitter"}
    assert len(touched) == 15

    done = await rescore(sessions, LengthAnalyzer(), B, scope, batch_size=4)
    assert (done.posts, done.batches) == (15, 4)
    async with sessions() as session:
        labels = await stored_labels(session)
    expected = _expected(posts, KeywordAnalyzer()) | {
        post_id: label
        for post_id, label in _expected(posts, LengthAnalyzer()).items()
        if post_id in touched
    }
    assert labels == expected
    await assert_counts_match_the_posts(sessions)

    # The metrics name both models: a mixed window says so, per source too.
    start = (now - timedelta(days=5)).isoformat()
    body = (await api.get("/api/metrics", params={"start": start})).json()
    assert body["models"] == {A: 45, B: 15} and body["total"] == 60
    reddit = (await api.get("/api/metrics", params={"start": start, "source": "reddit"})).json()
    assert reddit["models"] == {A: 30}
    # Only the rescored minutes (minute precision: the last post's minute, not the next one's).
    edges = {"start": posts[20].created_at.isoformat(), "source": "twitter"}
    edges["end"] = (posts[49].created_at + timedelta(seconds=1)).isoformat()
    assert (await api.get("/api/metrics", params=edges)).json()["models"] == {B: 15}


class DiesAfter(LengthAnalyzer):
    """Model B that goes down for good after `batches` batches (the probe fails too)."""

    def __init__(self, batches: int) -> None:
        super().__init__()
        self.left = batches

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        if self.left == 0:
            raise RuntimeError("the model's process was killed")
        self.left -= 1
        return await super().analyze(texts)


async def test_a_run_stopped_midway_is_finished_by_the_next(database, monkeypatch) -> None:
    """Stopped after three batches by the analyzer, then by a failure inside the fifth
    batch's transaction (its relabelled posts roll back with it): each run again continues,
    and no post and no count is moved twice."""
    _, sessions = database
    posts, now = await _store(sessions)
    with pytest.raises(AnalyzerDown):
        await rescore(sessions, DiesAfter(3), B, batch_size=5)
    async with sessions() as session:
        labels = await stored_labels(session)
    assert sorted(post_id for post_id, label in labels.items() if label[2] == B) == [
        post.post_id for post in posts[:15]
    ]
    await assert_counts_match_the_posts(sessions)
    assert await _models(sessions, now - timedelta(days=5), now) == {A: 45, B: 15}

    moves = store.move_rule_counts
    calls = []

    async def fails_on_the_second_batch(session, batch_moves):
        calls.append(len(batch_moves))
        if len(calls) == 2:
            raise ConnectionResetError("killed inside the transaction")
        return await moves(session, batch_moves)

    monkeypatch.setattr(store, "move_rule_counts", fails_on_the_second_batch)
    with pytest.raises(ConnectionResetError):
        await rescore(sessions, LengthAnalyzer(), B, batch_size=5)
    async with sessions() as session:
        done = [
            post_id for post_id, label in (await stored_labels(session)).items() if label[2] == B
        ]
    assert sorted(done) == [post.post_id for post in posts[:20]]
    await assert_counts_match_the_posts(sessions)

    monkeypatch.setattr(store, "move_rule_counts", moves)
    model = LengthAnalyzer()
    assert (await rescore(sessions, model, B, batch_size=5)).posts == 40
    assert sorted(model.seen) == sorted(post.content for post in posts[20:])
    async with sessions() as session:
        assert await stored_labels(session) == _expected(posts, model)
    await assert_counts_match_the_posts(sessions)
    assert await _models(sessions, now - timedelta(days=5), now) == {B: 60}


async def test_posts_analysed_live_meanwhile_are_not_analysed_twice(database) -> None:
    """While the rescore runs, the live workers store new posts: analysed by B (the model
    the rescore aims at), which the rescore leaves alone, and by A (a worker not switched
    yet), which it relabels when its walk reaches them."""
    _, sessions = database
    posts, now = await _store(sessions)
    live_b = make_posts(6, now - timedelta(days=2), tag="live-b")
    live_a = make_posts(4, now - timedelta(days=2), tag="live-a")

    async def live_traffic() -> None:
        await save_analysed(sessions, live_b, LengthAnalyzer(), now)
        await save_analysed(sessions, live_a, KeywordAnalyzer(), now)

    model = Meanwhile(live_traffic)
    done = await rescore(sessions, model, B, batch_size=10)
    assert done.posts == 64
    assert not {post.content for post in live_b} & set(model.seen)
    async with sessions() as session:
        assert await stored_labels(session) == _expected(posts + live_a + live_b, model)
    await assert_counts_match_the_posts(sessions)
    assert await _models(sessions, now - timedelta(days=5), now) == {B: 70}


async def test_a_post_changed_meanwhile_is_left_to_the_other_writer(database) -> None:
    """A second rescore relabels five posts of the first one's batch while the first
    analyses it: the first's guarded write leaves those five (and moves none of their
    counts twice)."""
    _, sessions = database
    posts, now = await _store(sessions)
    other = OtherModel()
    first_five = Scope(until=posts[5].created_at)

    async def second_rescore() -> None:
        assert (await rescore(sessions, other, other.model, first_five)).posts == 5

    done = await rescore(sessions, Meanwhile(second_rescore), B, batch_size=20)
    assert (done.posts, done.meanwhile) == (55, 5)
    async with sessions() as session:
        labels = await stored_labels(session)
    assert {label[2] for post_id, label in labels.items() if post_id < posts[5].post_id} == {
        other.model
    }
    await assert_counts_match_the_posts(sessions)
    assert await _models(sessions, now - timedelta(days=5), now) == {B: 55, other.model: 5}


async def test_counts_never_go_below_zero(database) -> None:
    """Posts written around the worker (no rule counts, as `bench load` writes them) and
    posts analysed days ago (their minutes past what any rule reads) move no rule count."""
    _, sessions = database
    now = utcnow()
    async with sessions() as session, session.begin():
        spec = RuleSpec(name="bad", keywords=["terrible"], threshold=0.5)
        await store.create_rule(session, spec, now - timedelta(days=10))
    uncounted = make_posts(30, now - timedelta(days=4), tag="u")
    old = make_posts(30, now - timedelta(days=4), tag="o")
    await save_analysed(sessions, uncounted, KeywordAnalyzer(), now, counted=False)
    await save_analysed(sessions, old, KeywordAnalyzer(), now - timedelta(days=3))
    async with sessions() as session:
        before = (await counts(session))["rule_counts"]
    assert before and all(row[1] < now - timedelta(days=2) for row in before)

    assert (await rescore(sessions, LengthAnalyzer(), B)).posts == 60
    after = await assert_counts_match_the_posts(sessions, rules=False)
    assert after["rule_counts"] == before


async def test_a_post_the_analyzer_refuses_costs_only_itself(database) -> None:
    _, sessions = database
    posts, now = await _store(sessions, count=12)
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE social_media_posts SET content = 'EXPLODE' WHERE post_id = 'r0005'")
        )

    class Refuses(LengthAnalyzer):
        async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
            if "EXPLODE" in texts:
                raise ValueError("cannot take this text")
            return await super().analyze(texts)

    done = await rescore(sessions, Refuses(), B)
    assert (done.posts, done.failed) == (11, 1)
    async with sessions() as session:
        assert (await stored_labels(session))["r0005"][2] == A
    assert await _models(sessions, now - timedelta(days=5), now) == {A: 1, B: 11}


async def test_retention_purges_model_rollups_with_the_rollups(database) -> None:
    settings, sessions = database
    posts, now = await _store(sessions)
    policy = Settings(database_url=settings.database_url, retention_days=2, rollup_retention_days=2)
    purged = await purge_once(sessions, policy, now=now)
    assert purged.rollup_cells > 0
    day = rollups.floor("d", now - timedelta(days=2))
    async with sessions() as session:
        for table in (PostRollup, ModelRollup):
            first = await session.scalar(select(func.min(table.bucket_start)))
            assert first == day, table


@pytest.mark.postgres
async def test_two_rescores_and_live_workers_at_once_count_every_post_once(pg_sessions) -> None:
    """Real concurrency, on separate PostgreSQL connections: two rescores walk the same
    posts while live workers store new ones analysed by A and by B. Each post is rescored
    by one of them (the other's guarded write skips it), and every count matches the
    posts."""
    async with pg_sessions() as session, session.begin():
        await session.execute(text("TRUNCATE post_rollups, model_rollups, alert_rules"))
    posts, now = await _store(pg_sessions, count=200, every=timedelta(minutes=17))
    live, live_b = [], []

    async def live_workers() -> None:
        for round_ in range(12):
            batch = make_posts(5, now - timedelta(days=1), tag=f"live{round_:02d}-")
            live.extend(batch)
            if round_ % 2:
                live_b.extend(batch)
            model = LengthAnalyzer() if round_ % 2 else KeywordAnalyzer()
            await save_analysed(pg_sessions, batch, model, now)
            await asyncio.sleep(0.01)

    first, second, _ = await asyncio.gather(
        rescore(pg_sessions, LengthAnalyzer(), B, batch_size=10),
        rescore(pg_sessions, LengthAnalyzer(), B, batch_size=10),
        live_workers(),
    )
    async with pg_sessions() as session:
        labels = await stored_labels(session)
    rescored = sum(1 for label in labels.values() if label[2] == B) - len(live_b)
    assert first.posts + second.posts == rescored >= 200
    await assert_counts_match_the_posts(pg_sessions)
    # Whatever the live workers stored after both walks passed, a last run finishes.
    await rescore(pg_sessions, LengthAnalyzer(), B)
    async with pg_sessions() as session:
        assert await stored_labels(session) == _expected(posts + live, LengthAnalyzer())
    await assert_counts_match_the_posts(pg_sessions)
