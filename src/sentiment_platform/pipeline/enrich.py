"""A batch's marks before it is analysed (issue 31): each post's language, and the first
post of its group of copies.

Both readers read one normal form a post (`normal_text`, as `text_reading.read_texts` makes
it). Making it and detecting languages is CPU work, done on the event loop in slices of a
few dozen posts with a yield after each, detection while the index's round trip is out. The
loop (which in the embedded default also serves the API) waits at most one slice, and the
batch being saved meanwhile runs from each database reply to its next wait undisturbed. In a
thread, as it was until issue 31's last round, fastText held the GIL and the saving batch's
Python ran in half-millisecond turns with it: the slices made the worker 15 % faster end to
end (`benchmarks/pipeline.py`, benchmarks/README.md).

The copies come from the runtime's duplicate index: in this process for the embedded
default, `RedisDuplicateIndex` (shared by every worker) in Redis mode. The index answers a
batch delivered twice the same way twice, so a redelivery is marked as its first delivery
was. An index in Redis that cannot be reached is waited out like the bus: nothing is stored
unmarked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

from redis.exceptions import RedisError

from sentiment_platform.domain import Post, PostMarks, utcnow
from sentiment_platform.retry import Backoff, retry_until
from sentiment_platform.services.analysis.duplicates import (
    DuplicateIndex,
    Fingerprint,
    fingerprints_of_normals,
)
from sentiment_platform.services.analysis.language import LanguageDetector
from sentiment_platform.services.analysis.normal_text import normal_form

T = TypeVar("T")

# Posts a slice: under a millisecond of work each (normal forms and fingerprints ~6 µs a
# post; detection ~12), and enough for the fingerprints' numpy passes to pay their setup.
NORMAL_SLICE = 128
DETECT_SLICE = 64


class Enricher:
    """Marks batches for one worker; `start` loads the language model (off the loop)."""

    def __init__(
        self, duplicates: DuplicateIndex, on_retry: Callable[[Exception, float], None]
    ) -> None:
        self.duplicates = duplicates
        self.on_retry = on_retry
        self._detector: LanguageDetector | None = None

    async def start(self) -> None:
        if self._detector is None:
            self._detector = await asyncio.to_thread(LanguageDetector)

    async def marks(self, posts: Sequence[Post], stop: asyncio.Event) -> dict[str, PostMarks]:
        """{post_id: its language and copy mark} for the batch's posts."""
        await self.start()
        assert self._detector is not None
        if not posts:
            return {}
        received = utcnow()  # the index's clock: when the worker had them
        asked = [(post.post_id, post.content, received) for post in posts]
        normals: list[bytes] = []
        found: list[Fingerprint] = []
        for texts in _slices([post.content for post in posts], NORMAL_SLICE):
            normals += (made := [normal_form(text) for text in texts])
            found += fingerprints_of_normals(made)
            await asyncio.sleep(0)  # the loop's other tasks between slices
        detecting = asyncio.ensure_future(self._languages(self._detector, normals))
        try:
            copies = await retry_until(
                lambda: self.duplicates.assign(asked, found),
                retryable=lambda error: isinstance(error, RedisError | OSError),
                stop=stop,
                backoff=Backoff(0.2, 10.0),
                on_retry=self.on_retry,
            )
        finally:
            languages = await detecting
        return {
            post.post_id: PostMarks(language, first)
            for post, language, first in zip(posts, languages, copies, strict=True)
        }

    @staticmethod
    async def _languages(detector: LanguageDetector, normals: Sequence[bytes]) -> list[str]:
        """Each normal form's language, a slice at a time (see the module's docstring)."""
        codes: list[str] = []
        for chunk in _slices(normals, DETECT_SLICE):
            codes += detector.detect_normals(chunk)
            await asyncio.sleep(0)
        return codes


def _slices(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
