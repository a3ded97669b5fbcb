"""A batch's marks before it is analysed (issue 31): each post's language, and the first
post of its group of copies.

Both readers read one normal form a post (`normal_text`, as `text_reading.read_texts` makes
it). Detection is CPU work: one call per batch, in a thread, so the event loop (which in the
embedded default also serves the API) is not held while it runs, and so it overlaps the
index's round trip to Redis. The copies
come from the runtime's duplicate index: in this process for the embedded default,
`RedisDuplicateIndex` (shared by every worker) in Redis mode. The index answers a batch
delivered twice the same way twice, so a redelivery is marked as its first delivery was.
An index in Redis that cannot be reached is waited out like the bus: nothing is stored
unmarked.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

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

GIL_SWITCH_INTERVAL_S = 0.0005


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
            # The detector's thread holds the GIL for up to the switch interval (5 ms by
            # default) whenever the event loop wants it back, after each database or Redis
            # reply of the batch being saved meanwhile: 0.5 ms made the worker 8 % faster
            # end to end (`benchmarks/pipeline.py`, docs/performance.md).
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    async def marks(self, posts: Sequence[Post], stop: asyncio.Event) -> dict[str, PostMarks]:
        """{post_id: its language and copy mark} for the batch's posts."""
        await self.start()
        assert self._detector is not None
        if not posts:
            return {}
        received = utcnow()  # the index's clock: when the worker had them
        asked = [(post.post_id, post.content, received) for post in posts]
        # `read_texts` in two steps: one normal form a post for both readers, then the
        # detector runs in a thread while the index works (in Redis, in Redis's time).
        normals, found = await asyncio.to_thread(_normals, [post.content for post in posts])
        detect = self._detector.detect_normals
        detecting = asyncio.ensure_future(asyncio.to_thread(detect, normals))
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


def _normals(texts: Sequence[str]) -> tuple[list[bytes], list[Fingerprint]]:
    """Each text's normal form, made once for both readers, and its duplicate fingerprint."""
    normals = [normal_form(text) for text in texts]
    return normals, fingerprints_of_normals(normals)
