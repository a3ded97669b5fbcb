"""The worker's marks, made in slices on the event loop: the same answers as the readers
called on the whole batch at once, and the loop free between slices."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from sentiment_platform.domain import Post, utcnow
from sentiment_platform.pipeline.demo import DemoGenerator
from sentiment_platform.pipeline.enrich import DETECT_SLICE, NORMAL_SLICE, Enricher
from sentiment_platform.services.analysis.duplicates import LocalDuplicateIndex
from sentiment_platform.services.analysis.language import LanguageDetector
from sentiment_platform.services.analysis.text_reading import read_texts

OTHER_LANGUAGES = [
    "Le service client ne répond jamais, je suis vraiment déçu de cette commande.",
    "Der Kundendienst antwortet nie, ich bin wirklich enttäuscht von dieser Bestellung.",
    "El servicio al cliente nunca responde, estoy muy decepcionado con este pedido.",
]


def _batch(size: int) -> list[Post]:
    """Demo posts (templated: many near copies), their retweets and other languages, shuffled
    so that copies and their originals fall in different slices."""
    demo = DemoGenerator(negative_ratio=0.3, seed=3).posts(size // 2)
    retweets = [Post(source="twitter", content=f"RT @someone: {post.content}") for post in demo]
    others = [Post(source="twitter", content=text) for text in OTHER_LANGUAGES]
    posts: list[Post] = [*demo, *retweets, *others]
    random.Random(5).shuffle(posts)
    return posts


def _enricher() -> Enricher:
    return Enricher(LocalDuplicateIndex(timedelta(hours=24)), on_retry=lambda error, delay: None)


async def test_marks_in_slices_equal_the_readers_on_the_whole_batch() -> None:
    posts = _batch(4 * NORMAL_SLICE + 7)  # slices of both sizes, the last ones partial
    assert len(posts) > 4 * DETECT_SLICE

    marks = await _enricher().marks(posts, asyncio.Event())

    texts = [post.content for post in posts]
    reading = read_texts(LanguageDetector(), texts)
    now = utcnow()
    expected_copies = await LocalDuplicateIndex(timedelta(hours=24)).assign(
        [(post.post_id, post.content, now) for post in posts], reading.fingerprints
    )
    assert list(marks) == [post.post_id for post in posts]
    assert [marks[post.post_id].language for post in posts] == reading.languages
    assert [marks[post.post_id].duplicate_of for post in posts] == expected_copies
    assert {"fr", "de", "es"} <= set(reading.languages)
    assert sum(first is not None for first in expected_copies) >= len(posts) // 2


async def test_the_event_loop_runs_other_tasks_between_slices() -> None:
    posts = _batch(4 * NORMAL_SLICE)
    enricher = _enricher()
    await enricher.start()  # the model's load is one thread call, not what is measured here
    turns = 0
    done = asyncio.Event()

    async def other_task() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    before = turns
    await enricher.marks(posts, asyncio.Event())
    done.set()
    await task
    slices = -(-len(posts) // NORMAL_SLICE) + -(-len(posts) // DETECT_SLICE)
    assert turns - before >= slices
