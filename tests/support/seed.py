"""A deterministic store of 360 analysed posts (+10 unanalysed) whose every count is known.

Post i is created at T0 + 20 s * i (two hours, three posts a minute), on source
twitter/reddit/news by i % 3, with sentiment by (7 * i) % 10 — positive for 0–3, negative
for 4–6, neutral for 7–9, so every ten consecutive posts hold exactly 4/3/3 — and emotion by
i % 5 over joy, sadness, anger, surprise, neutral (fear never occurs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
ANALYSED = 360
UNANALYSED = 10
SOURCES = ("twitter", "reddit", "news")
EMOTIONS = (Emotion.JOY, Emotion.SADNESS, Emotion.ANGER, Emotion.SURPRISE, Emotion.NEUTRAL)


def sentiment_of(i: int) -> Sentiment:
    residue = (7 * i) % 10
    if residue < 4:
        return Sentiment.POSITIVE
    return Sentiment.NEGATIVE if residue < 7 else Sentiment.NEUTRAL


def seed_posts() -> tuple[list[Post], list[Analysis]]:
    posts = [
        Post(
            post_id=f"p{i:04d}",
            source=SOURCES[i % 3],
            content=f"Seed post number {i} about the Launch" if i % 50 == 0 else f"seed post {i}",
            author=f"user{i % 7}",
            created_at=T0 + timedelta(seconds=20 * i),
        )
        for i in range(ANALYSED + UNANALYSED)
    ]
    analyses = [
        Analysis(
            post_id=f"p{i:04d}",
            sentiment=sentiment_of(i),
            confidence=0.9,
            emotion=EMOTIONS[i % 5],
            emotion_confidence=0.8,
            model="seed",
            analyzed_at=T0 + timedelta(seconds=20 * i + 1),
        )
        for i in range(ANALYSED)
    ]
    return posts, analyses


async def seed(session_factory: async_sessionmaker[AsyncSession]) -> None:
    posts, analyses = seed_posts()
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, analyses)
