"""Helpers for the rescore tests: a second deterministic analyzer (labels a function of the
text, unlike the keyword rule's), stores of posts analysed by the keyword rule, and what the
counts must be: the rollups a rebuild from the posts writes, the rule counts a recount of
the posts gives.

The CLI's subprocess loads `tests.support.rescoring:SlowLengthAnalyzer`, the repo on
PYTHONPATH.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Prediction, Sentiment
from sentiment_platform.models.alerting import RuleCount
from sentiment_platform.models.database import ModelRollup, PostRollup, UTCDateTime
from sentiment_platform.services.alerting.matcher import Matcher, RuleFilter
from sentiment_platform.services.alerting.rule_hits import rule_hits
from sentiment_platform.store import rollups
from tests.support.counted import save_counted
from tests.support.pipeline import KeywordAnalyzer

SENTIMENTS = tuple(Sentiment)
EMOTIONS = tuple(Emotion)
SOURCES = ("twitter", "reddit")
MOODS = ("I love this, great work", "this is terrible and broken", "the meeting is at noon")


class LengthAnalyzer:
    """Model B: the labels follow the text's length, so most posts change from the keyword
    rule's. Notes every text it was asked about."""

    model = "test-length-rule"

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        self.seen += [text for text in texts if text != "ok"]
        return [self.label(text) for text in texts]

    def label(self, text: str) -> Prediction:
        size = len(text)
        return Prediction(SENTIMENTS[size % 3], 0.7, EMOTIONS[size % 6], 0.6, self.model)


class SlowLengthAnalyzer(LengthAnalyzer):
    """Model B taking 0.2 s a batch: the CLI test kills the process in the middle of a run."""

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        await asyncio.sleep(0.2)
        return await super().analyze(texts)


def make_posts(
    count: int, start: datetime, tag: str = "r", every: timedelta = timedelta(minutes=67)
) -> list[Post]:
    """Posts `every` + 3 s apart (by default a little over an hour: each in a minute of its
    own, sixty of them over nearly three days), on two sources by turns."""
    return [
        Post(
            post_id=f"{tag}{i:04d}",
            source=SOURCES[i % 2],
            content=f"{MOODS[i % 3]} #{tag}{i}" + "!" * (i % 5),
            created_at=start + i * (every + timedelta(seconds=3)),
        )
        for i in range(count)
    ]


async def save_analysed(
    session_factory: async_sessionmaker[AsyncSession],
    posts: Sequence[Post],
    model: KeywordAnalyzer | LengthAnalyzer,
    analyzed_at: datetime,
    *,
    counted: bool = True,
) -> None:
    """Store the posts as the worker does after `model` labelled them at `analyzed_at`,
    with their rule counts unless `counted` is off (as `bench load` writes posts)."""
    predictions = await model.analyze([post.content for post in posts])
    analyses = [
        Analysis.of(post.post_id, prediction, analyzed_at)
        for post, prediction in zip(posts, predictions, strict=True)
    ]
    if counted:
        async with session_factory() as session:
            matcher = await _matcher(session)
        await save_counted(session_factory, posts, analyses, matcher)
        return
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, analyses)


async def _matcher(session: AsyncSession) -> Matcher:
    rules = await store.list_rules(session)
    return Matcher.build(RuleFilter(r.id, tuple(r.keywords), r.source) for r in rules)


async def counts(session: AsyncSession) -> dict[str, list[tuple]]:
    """Every non-empty row of the three counting tables, sorted."""
    found = {}
    for name, model in (
        ("post_rollups", PostRollup),
        ("model_rollups", ModelRollup),
        ("rule_counts", RuleCount),
    ):
        rows = await session.execute(select(model.__table__).where(model.count != 0))
        found[name] = sorted(tuple(row) for row in rows)
    return found


async def assert_counts_match_the_posts(
    session_factory: async_sessionmaker[AsyncSession], *, rules: bool = True
) -> dict[str, list[tuple]]:
    """The rollups equal what `rollups rebuild` writes from the posts, the rule counts (with
    `rules`) what counting every analysed post again gives, and no count is below zero.
    Leaves the store as it found it. Returns the counts."""
    async with session_factory() as session:
        kept = await counts(session)
        recounted = await recount_rules(session)
        await rollups.rebuild(session)
        rebuilt = await counts(session)
        await session.rollback()
    assert all(row[-1] > 0 for rows in kept.values() for row in rows), kept
    assert kept["post_rollups"] == rebuilt["post_rollups"]
    assert kept["model_rollups"] == rebuilt["model_rollups"]
    if rules:
        assert {(r[0], r[1], r[2], r[3]): r[4] for r in kept["rule_counts"]} == recounted
    return kept


async def recount_rules(session: AsyncSession) -> dict[tuple, int]:
    """The rule counts every analysed post gives with today's rules (minute of analysis)."""
    matcher = await _matcher(session)
    rows = await session.execute(
        text(
            "SELECT post_id, source, content, sentiment, emotion, confidence, "
            "emotion_confidence, model, analyzed_at FROM social_media_posts "
            "WHERE model IS NOT NULL"
        ).columns(analyzed_at=UTCDateTime())
    )
    pairs = []
    for post_id, source, content, sentiment, emotion, conf, emotion_conf, model, at in rows:
        post = Post(post_id=post_id, source=source, content=content)
        analyzed_at = store.floor_minute(at)
        prediction = Prediction(Sentiment(sentiment), conf, Emotion(emotion), emotion_conf, model)
        pairs.append((post, Analysis.of(post_id, prediction, analyzed_at)))
    counted: Counter[tuple] = Counter()
    for hit in rule_hits(matcher, pairs):
        counted[(hit.rule_id, hit.minute, hit.sentiment, hit.emotion)] += hit.count
    return dict(counted)


async def stored_labels(session: AsyncSession) -> dict[str, tuple]:
    """post_id → (sentiment, emotion, model, analyzed_at) on the post row AND its analysis
    row (they must agree)."""
    rows = await session.execute(
        text(
            "SELECT p.post_id, p.sentiment, p.emotion, p.model, a.sentiment, a.emotion, a.model "
            "FROM social_media_posts p JOIN sentiment_analysis a ON a.post_ref = p.id"
        )
    )
    labels = {}
    for post_id, sentiment, emotion, model, *copy in rows:
        assert (sentiment, emotion, model) == tuple(copy), post_id
        labels[post_id] = (sentiment, emotion, model)
    return labels
