"""save_batch: one transaction, idempotent on post_id, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.database import PostRollup, SentimentAnalysis, SocialMediaPost

pytestmark = pytest.mark.asyncio


def batch(n: int, offset: int = 0) -> tuple[list[Post], list[Analysis]]:
    posts = [Post(post_id=f"b{i}", source="test", content=f"text {i}") for i in range(offset, n)]
    analyses = [
        Analysis(
            post_id=post.post_id,
            sentiment=Sentiment.NEGATIVE,
            confidence=0.7,
            emotion=Emotion.ANGER,
            emotion_confidence=0.6,
            model="test",
            analyzed_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for post in posts
    ]
    return posts, analyses


async def counts(session) -> tuple[int, int]:
    posts = await session.scalar(select(func.count()).select_from(SocialMediaPost))
    analyses = await session.scalar(select(func.count()).select_from(SentimentAnalysis))
    return posts, analyses


async def test_a_redelivered_batch_neither_duplicates_posts_nor_analyses(database) -> None:
    _, session_factory = database
    posts, analyses = batch(50)
    async with session_factory() as session, session.begin():
        assert len(await store.save_batch(session, posts, analyses)) == 50
    async with session_factory() as session, session.begin():
        assert len(await store.save_batch(session, posts, analyses)) == 0
    more_posts, more_analyses = batch(80, offset=40)  # overlaps b40..b49
    async with session_factory() as session, session.begin():
        assert len(await store.save_batch(session, more_posts, more_analyses)) == 30
    async with session_factory() as session:
        assert await counts(session) == (80, 80)


async def test_an_analysis_can_follow_its_post_later(database) -> None:
    _, session_factory = database
    posts, analyses = batch(5)
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, [])
    async with session_factory() as session, session.begin():
        assert len(await store.save_batch(session, posts, analyses)) == 5
    async with session_factory() as session:
        assert await counts(session) == (5, 5)
        stored = await session.scalar(
            select(SentimentAnalysis)
            .join(SentimentAnalysis.post)
            .where(SocialMediaPost.post_id == "b3")
        )
        assert stored is not None and stored.analyzed_at == datetime(2026, 1, 1, tzinfo=UTC)
        post = await session.scalar(select(SocialMediaPost).where(SocialMediaPost.post_id == "b3"))
        assert post is not None and post.sentiment == stored.sentiment  # labels copied
        assert post.analyzed_at == stored.analyzed_at
        # The rollups moved the five posts from "unanalysed" to their labels, nothing more.
        cells = (
            await session.execute(
                select(PostRollup.sentiment, func.sum(PostRollup.count))
                .where(PostRollup.grain == "m")
                .group_by(PostRollup.sentiment)
            )
        ).all()
        assert {label: int(n) for label, n in cells if n} == {stored.sentiment: 5}


async def test_a_batch_interrupted_before_commit_writes_nothing(database) -> None:
    _, session_factory = database
    posts, analyses = batch(3)
    with pytest.raises(RuntimeError):
        async with session_factory() as session, session.begin():
            await store.save_batch(session, posts, analyses)
            raise RuntimeError("crash between the writes and the commit")
    async with session_factory() as session:
        assert await counts(session) == (0, 0)
