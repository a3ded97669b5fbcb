"""A rescore follows routing (issue 31), on SQLite and PostgreSQL: a post is relabelled only
by a model registered for its language, a post stored before detection (no language) is read
as before, and every count still equals what a rebuild from the posts gives (the rollups'
language and copy cells included)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from sentiment_platform import store
from sentiment_platform.domain import Analysis, Post, PostMarks, Prediction, utcnow
from sentiment_platform.services.analysis.rescore import Rescored, rescore
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer
from tests.support.pipeline import KeywordAnalyzer
from tests.support.rescoring import LengthAnalyzer, assert_counts_match_the_posts, stored_labels

pytestmark = pytest.mark.asyncio

A, B = KeywordAnalyzer.model, LengthAnalyzer.model


class EnglishLength:
    """Model B as a backend of the chain, registered for English only."""

    name = B

    def reader(self, language: str | None) -> EnglishLength | None:
        return self if language in (None, "und", "en") else None

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return [LengthAnalyzer().label(text) for text in texts]


async def test_a_rescore_never_relabels_a_language_its_model_does_not_read(database) -> None:
    _, sessions = database
    now = utcnow()
    posts = [
        Post(post_id="en", source="t", content="I love this, great work", created_at=now),
        Post(post_id="fr", source="t", content="je déteste ce service", created_at=now),
        Post(post_id="copy", source="t", content="RT @a: I love this, great work", created_at=now),
        Post(post_id="old", source="t", content="this is terrible and broken", created_at=now),
    ]
    marks = {
        "en": PostMarks("en"),
        "fr": PostMarks("fr"),
        "copy": PostMarks("en", duplicate_of="en"),
    }  # "old": stored before languages were detected
    predictions = await KeywordAnalyzer().analyze([post.content for post in posts])
    at = now - timedelta(minutes=5)
    analyses = [Analysis.of(p.post_id, x, at) for p, x in zip(posts, predictions, strict=True)]
    async with sessions() as session, session.begin():
        await store.save_batch(session, posts, analyses, marks)
    await assert_counts_match_the_posts(sessions, rules=False)

    done = await rescore(sessions, SentimentAnalyzer([EnglishLength()]), B)
    assert done == Rescored(posts=3, unreadable=1, batches=1)
    async with sessions() as session:
        models = {post_id: label[2] for post_id, label in (await stored_labels(session)).items()}
    assert models == {"en": B, "fr": A, "copy": B, "old": B}
    await assert_counts_match_the_posts(sessions, rules=False)
