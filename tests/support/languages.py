"""A store of posts in several languages with a copy flood, every count known (issue 31).

From T0, two seconds apart (under an hour in all):

- 200 originals, English, on `twitter`: `o000`–`o199`, even ones negative / anger, odd
  ones positive / joy;
- 400 copies of them, English, on `twitter`: `c000`–`c399`, copy `k` of original `k // 2`
  (`duplicate_of`), every one negative / anger (a complaint copied again and again);
- 1,000 others on `news`: `x0000`–`x0999`, language by `i % 10`: 0–5 `en`, 6–7 `fr`,
  8 `de`, 9 `und`; neutral / neutral, except the German ones, which no model reads:
  unanalysed, `analysis: "unsupported_language"`;
- 10 posts stored before language detection (`language` null), on `news`: `l00`–`l09`,
  neutral / neutral.

Stored as the worker stores posts (`save_batch`), then given their language, copy marks and
analysis state in SQL, and the rollups rebuilt from the posts (`rollups.rebuild`): what a
store looks like after issue 31's worker, without depending on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Emotion, Post, Sentiment
from sentiment_platform.models.database import SocialMediaPost
from sentiment_platform.store import rollups

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
ORIGINALS, COPIES, OTHERS, LEGACY = 200, 400, 1_000, 10
OTHER_LANGUAGES = ("en",) * 6 + ("fr", "fr", "de", "und")


def _post(post_id: str, source: str, n: int, text: str, t0: datetime) -> Post:
    return Post(
        post_id=post_id, source=source, content=text, created_at=t0 + timedelta(seconds=2 * n)
    )


def _analysis(
    post_id: str, sentiment: Sentiment, emotion: Emotion, n: int, t0: datetime
) -> Analysis:
    return Analysis(
        post_id=post_id,
        sentiment=sentiment,
        confidence=0.9,
        emotion=emotion,
        emotion_confidence=0.8,
        model="seed",
        analyzed_at=t0 + timedelta(seconds=2 * n + 1),
    )


def layout(
    t0: datetime = T0,
) -> tuple[list[Post], list[Analysis], dict[str, tuple[str | None, str | None]]]:
    """The posts, their analyses, and each post's (language, duplicate_of)."""
    posts: list[Post] = []
    analyses: list[Analysis] = []
    marks: dict[str, tuple[str | None, str | None]] = {}
    n = 0
    for i in range(ORIGINALS):
        post_id = f"o{i:03d}"
        posts.append(_post(post_id, "twitter", n, f"complaint number {i} about the delivery", t0))
        negative = i % 2 == 0
        sentiment = Sentiment.NEGATIVE if negative else Sentiment.POSITIVE
        analyses.append(
            _analysis(post_id, sentiment, Emotion.ANGER if negative else Emotion.JOY, n, t0)
        )
        marks[post_id] = ("en", None)
        n += 1
    for k in range(COPIES):
        post_id = f"c{k:03d}"
        posts.append(_post(post_id, "twitter", n, f"RT @someone: complaint number {k // 2}", t0))
        analyses.append(_analysis(post_id, Sentiment.NEGATIVE, Emotion.ANGER, n, t0))
        marks[post_id] = ("en", f"o{k // 2:03d}")
        n += 1
    for i in range(OTHERS):
        post_id = f"x{i:04d}"
        language = OTHER_LANGUAGES[i % 10]
        posts.append(_post(post_id, "news", n, f"other post {i} in {language}", t0))
        if language != "de":
            analyses.append(_analysis(post_id, Sentiment.NEUTRAL, Emotion.NEUTRAL, n, t0))
        marks[post_id] = (language, None)
        n += 1
    for i in range(LEGACY):
        post_id = f"l{i:02d}"
        posts.append(_post(post_id, "news", n, f"an older post {i}", t0))
        analyses.append(_analysis(post_id, Sentiment.NEUTRAL, Emotion.NEUTRAL, n, t0))
        marks[post_id] = (None, None)
        n += 1
    return posts, analyses, marks


async def seed_languages(
    session_factory: async_sessionmaker[AsyncSession], t0: datetime = T0
) -> None:
    """The store above, its first post at `t0`."""
    posts, analyses, marks = layout(t0)
    async with session_factory() as session, session.begin():
        await store.save_batch(session, posts, analyses)
        await _mark(session, marks)
        await rollups.rebuild(session)


async def _mark(session: AsyncSession, marks: dict[str, tuple[str | None, str | None]]) -> None:
    table = SocialMediaPost.__table__
    groups: dict[tuple[str | None, str | None], list[str]] = {}
    for post_id, mark in marks.items():
        groups.setdefault(mark, []).append(post_id)
    for (language, duplicate_of), ids in groups.items():
        await session.execute(
            update(table)
            .where(table.c.post_id.in_(ids))
            .values(language=language, duplicate_of=duplicate_of)
        )
    await session.execute(
        update(table).where(table.c.language == "de").values(analysis="unsupported_language")
    )
