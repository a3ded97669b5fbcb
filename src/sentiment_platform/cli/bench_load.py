"""Synthetic history straight into the store, for benchmarks and demos (`bench load`).

N analysed posts spread uniformly over the last D days, oldest first, written past the bus
and the model by `store.bulk`. The rollups are then recomputed for the days touched and the
tables analysed. Deterministic for a seed (the texts, times and labels; the
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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.domain import Emotion, Sentiment, utcnow
from sentiment_platform.store import bulk, rollups
from sentiment_platform.store.prepared import dialect_name

POSTS, ANALYSES = bulk.POSTS_TABLE, bulk.ANALYSES_TABLE

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
    """(post row, analysis row) pairs in `store.bulk`'s POST_COLUMNS / ANALYSIS_COLUMNS order."""
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
        postgres = dialect_name(session) == "postgresql"
        first_id = await bulk.first_free_id(session, count)
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
                bulk.copy_rows(session_factory, POSTS, bulk.POST_COLUMNS, [p for p, _ in chunk]),
                bulk.copy_rows(session_factory, ANALYSES, bulk.ANALYSIS_COLUMNS, pending),
            )
            pending = [a for _, a in chunk]
        else:
            async with session_factory() as session, session.begin():
                await bulk.insert_rows(session, [p for p, _ in chunk], [a for _, a in chunk])
        written += len(chunk)
        if progress is not None:
            progress(len(chunk))
    await bulk.copy_rows(session_factory, ANALYSES, bulk.ANALYSIS_COLUMNS, pending)
    loaded = time.perf_counter()
    async with session_factory() as session, session.begin():
        await rollups.rebuild(session, since=now - timedelta(days=days))
    async with session_factory() as session:
        await bulk.analyze_tables(session)
        await session.commit()
    return Loaded(count, loaded - started, time.perf_counter() - loaded)
