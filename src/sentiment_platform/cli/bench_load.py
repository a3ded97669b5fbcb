"""Synthetic history straight into the store, for benchmarks and demos (`bench load`).

N analysed posts spread uniformly over the last D days, oldest first, written past the bus
and the model: PostgreSQL through `COPY` (asyncpg's `copy_records_to_table`), SQLite in
batched inserts.
The rollups are then recomputed for the days touched and the tables analysed, so the
planner knows their new size. Deterministic for a seed (the texts, times and labels; the
post ids carry a run token so two loads never collide).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.domain import Emotion, Sentiment, utcnow
from sentiment_platform.models.database import SentimentAnalysis, SocialMediaPost
from sentiment_platform.store import rollups

SOURCES = ("twitter", "reddit", "news", "reviews", "forum")
_SUBJECTS = (
    "the delivery",
    "support",
    "the new app",
    "the launch",
    "my order",
    "the update",
    "the price",
    "checkout",
    "the flight",
    "customer service",
    "the battery",
    "shipping",
)
_VERDICTS = {
    Sentiment.POSITIVE: ("is great", "works perfectly", "made my day", "is so fast now"),
    Sentiment.NEGATIVE: ("is broken again", "keeps crashing", "was a huge delay", "is awful"),
    Sentiment.NEUTRAL: ("arrived today", "changed this week", "is on the list", "was mentioned"),
}
_EMOTIONS = {
    Sentiment.POSITIVE: (Emotion.JOY, Emotion.SURPRISE, Emotion.NEUTRAL),
    Sentiment.NEGATIVE: (Emotion.ANGER, Emotion.SADNESS, Emotion.FEAR),
    Sentiment.NEUTRAL: (Emotion.NEUTRAL, Emotion.SURPRISE),
}
CHUNK = 50_000
MODEL = "bench/synthetic"
ANALYSIS_COLUMNS = (
    "post_ref",
    "sentiment",
    "confidence",
    "emotion",
    "emotion_confidence",
    "model",
    "analyzed_at",
)
# The post's own columns, then the copy of its analysis it carries.
POST_COLUMNS = (
    *("id", "post_id", "source", "content", "author", "created_at", "ingested_at"),
    *ANALYSIS_COLUMNS[1:],
)


@dataclass(frozen=True, slots=True)
class Loaded:
    posts: int
    load_s: float  # posts and analyses written
    rollups_s: float  # rollups recomputed, tables analysed

    @property
    def posts_per_s(self) -> float:
        return self.posts / self.load_s if self.load_s else 0.0


def _texts(rng: random.Random) -> dict[Sentiment, list[str]]:
    return {
        sentiment: [
            f"{subject.capitalize()} {verdict} #{tag}"
            for subject in _SUBJECTS
            for verdict in verdicts
            for tag in ("brand", "help", "news", "life", "tech")
        ]
        for sentiment, verdicts in _VERDICTS.items()
    }


def synthetic_rows(
    count: int, days: float, seed: int, first_id: int, now: datetime
) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    """(post row, analysis row) pairs in POST_COLUMNS / ANALYSIS_COLUMNS order."""
    rng = random.Random(seed)
    texts = _texts(rng)
    token = uuid.uuid4().hex[:8]
    span = days * 86_400
    sentiments = (Sentiment.POSITIVE, Sentiment.NEGATIVE, Sentiment.NEUTRAL)
    step = span / count if count else 0.0
    for i in range(count):
        # Oldest first, one post in each of `count` equal slots (uniform over the span): in
        # time order, as a live feed writes them, each index grows at one end (in random
        # order the four created_at indexes cost the load as much as the text index).
        created = now - timedelta(seconds=span - (i + rng.random()) * step)
        sentiment = rng.choices(sentiments, (40, 25, 35))[0]
        emotion = rng.choice(_EMOTIONS[sentiment])
        analyzed = created + timedelta(seconds=1)
        ref = first_id + i
        content = f"{rng.choice(texts[sentiment])} {i % 997}"
        analysis = (ref, sentiment.value, 0.9, emotion.value, 0.8, MODEL, analyzed)
        post = (ref, f"bench-{token}-{i}", SOURCES[i % 5], content, f"user{i % 5000}", created)
        yield (*post, analyzed, *analysis[1:]), analysis


async def load(
    session_factory: async_sessionmaker[AsyncSession],
    count: int,
    days: float,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Loaded:
    now = utcnow()
    started = time.perf_counter()
    async with session_factory() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        first_id = await _reserve_ids(session, count) if postgres else await _next_id(session)
        await session.commit()
    rows = synthetic_rows(count, days, seed, first_id, now)
    written = 0
    pending: list[tuple[Any, ...]] = []  # analyses whose posts are committed
    while written < count:
        chunk = [next(rows) for _ in range(min(CHUNK, count - written))]
        if postgres:
            # Two backends at once: this chunk's posts, the previous chunk's analyses (their
            # posts are committed, so the foreign key holds).
            await asyncio.gather(
                _copy(session_factory, "social_media_posts", POST_COLUMNS, [p for p, _ in chunk]),
                _copy(session_factory, "sentiment_analysis", ANALYSIS_COLUMNS, pending),
            )
            pending = [a for _, a in chunk]
        else:
            async with session_factory() as session, session.begin():
                await session.execute(
                    insert(SocialMediaPost),
                    [dict(zip(POST_COLUMNS, p, strict=True)) for p, _ in chunk],
                )
                await session.execute(
                    insert(SentimentAnalysis),
                    [dict(zip(ANALYSIS_COLUMNS, a, strict=True)) for _, a in chunk],
                )
        written += len(chunk)
        if progress is not None:
            progress(len(chunk))
    await _copy(session_factory, "sentiment_analysis", ANALYSIS_COLUMNS, pending)
    loaded = time.perf_counter()
    async with session_factory() as session, session.begin():
        await rollups.rebuild(session, since=now - timedelta(days=days))
    async with session_factory() as session:
        analyze = (
            "ANALYZE social_media_posts, sentiment_analysis, post_rollups"
            if postgres
            else "ANALYZE"
        )
        await session.execute(text(analyze))
        await session.commit()
    return Loaded(count, loaded - started, time.perf_counter() - loaded)


async def _reserve_ids(session: AsyncSession, count: int) -> int:
    """A block of `count` post ids from the sequence, so COPY can name them."""
    last = await session.scalar(
        text(
            "SELECT setval(pg_get_serial_sequence('social_media_posts', 'id'), "
            "nextval(pg_get_serial_sequence('social_media_posts', 'id')) + :n - 1)"
        ),
        {"n": count},
    )
    return int(last or 0) - count + 1


async def _next_id(session: AsyncSession) -> int:
    return int(
        await session.scalar(text("SELECT coalesce(max(id), 0) + 1 FROM social_media_posts")) or 1
    )


async def _copy(
    session_factory: async_sessionmaker[AsyncSession],
    table: str,
    columns: tuple[str, ...],
    records: list[tuple[Any, ...]],
) -> None:
    """One COPY in a transaction of its own (no statement timeout)."""
    if not records:
        return
    async with session_factory() as session, session.begin():
        await rollups.no_statement_timeout(session)
        connection = await session.connection()
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.copy_records_to_table(table, records=records, columns=list(columns))
