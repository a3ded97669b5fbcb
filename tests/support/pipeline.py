"""Helpers for the pipeline tests: a small deterministic analyzer (no model needed), posts,
and waiting for what the pipeline stores. Their fixtures are in tests/integration/conftest.py.

A worker subprocess loads the analyzer from here too:
`--analyzer tests.support.pipeline:SlowKeywordAnalyzer`, the repo on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.domain import Emotion, Post, Prediction, Sentiment
from sentiment_platform.pipeline.worker import Worker

MARKER_ENV = "PIPELINE_TEST_MARKER"


class KeywordAnalyzer:
    """A deterministic rule: a few words decide the label. Raises on 'EXPLODE' (a poison text)."""

    model = "test-keyword-rule"
    negative = ("terrible", "awful", "hate", "broken", "worst", "angry")
    positive = ("love", "great", "excellent", "happy", "wonderful")

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        self.batches.append(len(texts))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if any("EXPLODE" in text for text in texts):
            raise RuntimeError("the keyword rule cannot handle this text")
        return [self._label(text.lower()) for text in texts]

    def _label(self, text: str) -> Prediction:
        if any(word in text for word in self.negative):
            return Prediction(Sentiment.NEGATIVE, 0.9, Emotion.ANGER, 0.8, self.model)
        if any(word in text for word in self.positive):
            return Prediction(Sentiment.POSITIVE, 0.9, Emotion.JOY, 0.8, self.model)
        return Prediction(Sentiment.NEUTRAL, 0.6, Emotion.NEUTRAL, 0.6, self.model)


class SlowKeywordAnalyzer(KeywordAnalyzer):
    """The keyword rule taking 0.5 s a batch and noting each batch it starts in the file named
    by $PIPELINE_TEST_MARKER, so a test can stop a worker process in the middle of one."""

    def __init__(self) -> None:
        super().__init__(delay_s=0.5)
        self.marker = os.environ.get(MARKER_ENV)

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        if self.marker:
            await asyncio.to_thread(_append_line, Path(self.marker), str(len(texts)))
        return await super().analyze(texts)


def _append_line(path: Path, line: str) -> None:
    with path.open("a") as handle:
        handle.write(line + "\n")


async def batches_started(marker: Path) -> int:
    """How many batches a SlowKeywordAnalyzer noted in `marker` so far."""
    exists = await asyncio.to_thread(marker.exists)
    return len((await asyncio.to_thread(marker.read_text)).splitlines()) if exists else 0


def make_posts(count: int, tag: str = "") -> list[Post]:
    moods = ("I love this, great work", "this is terrible and broken", "the meeting is at noon")
    return [
        Post(post_id=f"{tag}{i:05d}", source="test", content=f"{moods[i % 3]} #{i}")
        for i in range(count)
    ]


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    state: Callable[[], Awaitable[str]] | None = None,
) -> None:
    """Poll `condition` until it holds; on timeout the error says what was awaited and, when
    `state` is given, what things looked like then (a rare CI timeout is then readable)."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            seen = f" ({await state()})" if state is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}{seen}")
        await asyncio.sleep(0.05)


async def counts(session_factory: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(posts, analyses) stored."""
    async with session_factory() as session:
        posts = (await session.execute(text("SELECT count(*) FROM social_media_posts"))).scalar()
        analyses = (await session.execute(text("SELECT count(*) FROM sentiment_analysis"))).scalar()
    return int(posts or 0), int(analyses or 0)


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker], exit_within_s: float = 30) -> AsyncIterator[None]:
    """Workers as tasks; stopped the way SIGTERM stops them, and required to exit within
    `exit_within_s`."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), exit_within_s)
