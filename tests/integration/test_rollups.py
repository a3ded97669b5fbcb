"""The rollups answer what the raw rows answer: a property test on SQLite and PostgreSQL,
plus rebuild, redelivery and the long ranges that used to be refused. The model rollups
name the models behind the same counts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.database import ModelRollup, PostRollup, SocialMediaPost
from sentiment_platform.services.reporting.aggregator import Bucket, compute_metrics
from sentiment_platform.store import rollups

pytestmark = pytest.mark.asyncio

BASE = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # a Monday night: days, a week, a month edge
SOURCES = ("twitter", "reddit", "news")
SPAN_S = 3 * 24 * 3600

post_spec = st.tuples(
    st.integers(0, SPAN_S - 1),  # seconds after BASE
    st.sampled_from(SOURCES),
    st.sampled_from(list(Sentiment)),
    st.sampled_from(list(Emotion)),
    st.booleans(),  # analysed
)
moment = st.integers(-3600, SPAN_S + 3600).map(lambda s: BASE + timedelta(seconds=s))


def build(specs: list[tuple[int, str, Sentiment, Emotion, bool]], tag: str):
    posts, analyses = [], []
    for i, (offset, source, sentiment, emotion, analysed) in enumerate(specs):
        post_id = f"{tag}{i}"
        posts.append(
            Post(
                post_id=post_id,
                source=source,
                content=f"post {i}",
                created_at=BASE + timedelta(seconds=offset),
            )
        )
        if analysed:
            analyses.append(Analysis(post_id, sentiment, 0.9, emotion, 0.8, model_of(i), BASE))
    return posts, analyses


def model_of(i: int) -> str:
    """Two models take turns, so every window the property test draws may mix them."""
    return ("model-a", "model-b")[i % 2]


def raw_answer(specs, start, end, bucket: Bucket, source):
    """What the metrics must say, computed from the rows themselves in Python."""
    low, high = rollups.minute_range(start, end)
    sentiments: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    timeline: Counter[datetime] = Counter()
    models: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for i, (offset, name, sentiment, emotion, analysed) in enumerate(specs):
        created = BASE + timedelta(seconds=offset)
        if analysed and low <= created < high and source in (None, name):
            sentiments[sentiment.value] += 1
            emotions[emotion.value] += 1
            timeline[bucket.floor(created)] += 1
            models[model_of(i)] += 1
            sources[name] += 1
    return sentiments, emotions, timeline, models, sources


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(post_spec, min_size=1, max_size=120),
    split=st.integers(0, 60),
    bounds=st.tuples(moment, moment),
    bucket=st.sampled_from(list(Bucket)),
    source=st.none() | st.sampled_from(SOURCES),
)
async def test_rollup_answers_equal_raw_rows(database, specs, split, bounds, bucket, source):
    _, session_factory = database
    start, end = min(bounds), max(bounds)
    async with session_factory() as session:
        try:
            async with session.begin_nested():
                posts, analyses = build(specs, "h")
                # Two batches, the second redelivering part of the first: only new rows count.
                early = {post.post_id for post in posts[:split]}
                first = [a for a in analyses if a.post_id in early][: split // 2]
                await store.save_batch(session, posts[:split], first)  # some analyses later
                await store.save_batch(session, posts, analyses)
                await store.save_batch(session, posts[:split], analyses)  # a redelivery
                metrics = await compute_metrics(session, start, end, bucket, source)
                sentiments, emotions, timeline, models, sources = raw_answer(
                    specs, start, end, metrics.bucket, source
                )
                assert {k.value: v.count for k, v in metrics.sentiment.items() if v.count} == (
                    dict(sentiments)
                )
                assert {k.value: v.count for k, v in metrics.emotion.items() if v.count} == (
                    dict(emotions)
                )
                drawn = {p.bucket_start: p.total for p in metrics.timeline if p.total}
                assert drawn == {k: v for k, v in timeline.items() if v}
                assert metrics.models == dict(models)
                # no source listed whose posts all lie in cells the read took away
                assert {name: b.total for name, b in metrics.by_source.items()} == dict(sources)
                # The page total (exact, any range) from the rollups and the partial edges.
                where = store.PostFilter(since=start, until=end, source=source)
                total, capped = await store.count_matches(session, where)
                expected = sum(
                    1
                    for offset, name, *_ in specs
                    if start <= BASE + timedelta(seconds=offset) < end and source in (None, name)
                )
                assert (total, capped) == (expected, False)
                raise _Rollback
        except _Rollback:
            pass


class _Rollback(Exception):
    pass


async def test_rebuild_recomputes_what_save_batch_kept(database) -> None:
    """Both tables: the post rollups and the model rollups `save_batch` keeps are what a
    rebuild from the posts writes, and a rebuild from a day on keeps the days before."""
    _, session_factory = database
    specs = [
        (i * 97, SOURCES[i % 3], list(Sentiment)[i % 3], Emotion.JOY, i % 4 > 0) for i in range(200)
    ]
    posts, analyses = build(specs, "r")
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, analyses)
    async with session_factory() as session, session.begin():
        kept = sorted(
            (await session.execute(select(PostRollup.__table__).where(PostRollup.count != 0))).all()
        )
        by_model = sorted((await session.execute(select(ModelRollup.__table__))).all())
        assert {row.model for row in by_model} == {"model-a", "model-b"}
        assert sum(row.count for row in by_model if row.grain == "d") == len(analyses)
        await session.execute(delete(PostRollup))
        await session.execute(delete(ModelRollup))
        await rollups.rebuild(session, since=None)
        rebuilt = sorted((await session.execute(select(PostRollup.__table__))).all())
        assert rebuilt == kept and len(kept) > 0
        assert sorted((await session.execute(select(ModelRollup.__table__))).all()) == by_model
        # A rebuild from a day on leaves earlier days as they were.
        await rollups.rebuild(session, since=BASE + timedelta(days=1, hours=5))
        assert sorted((await session.execute(select(PostRollup.__table__))).all()) == kept
        assert sorted((await session.execute(select(ModelRollup.__table__))).all()) == by_model
        grand = await session.scalar(
            select(func.sum(PostRollup.count)).where(PostRollup.grain == "d")
        )
        assert grand == await session.scalar(select(func.count()).select_from(SocialMediaPost))


async def test_long_ranges_answer_with_a_coarser_bucket(api) -> None:
    for params, bucket in (
        ({"start": "2000-01-01T00:00:00Z"}, "month"),
        ({"start": "2025-01-01T00:00:00Z", "bucket": "minute"}, "day"),
        ({"start": "0001-01-01T00:00:00Z"}, "month"),
        ({"window_minutes": 43200}, "day"),
    ):
        response = await api.get("/api/metrics", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["bucket"] == bucket
        assert 1 <= len(body["timeline"]) <= 1500
