"""The live announcement of a settled batch: one `post.analyzed` event per post stored
(its language and copy mark included; a post no model reads announced with
`analysis: "unsupported_language"` and no sentiment), and the analysed-posts counter."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from redis.exceptions import RedisError

from sentiment_platform.bus import POST_ANALYZED, Event, Events
from sentiment_platform.domain import PostView
from sentiment_platform.pipeline.settle import Stored
from sentiment_platform.telemetry import POSTS_ANALYZED

log = logging.getLogger(__name__)


async def announce(events: Events, stored: Sequence[Stored], consumer: str) -> None:
    """Best effort: the posts are stored whatever happens to their live announcement."""
    for done in stored:
        if done.analysis is not None:
            POSTS_ANALYZED.labels(model=done.analysis.model).inc()
    if not stored:
        return
    published = [
        Event(
            POST_ANALYZED,
            PostView.of(done.item.post, done.analysis, marks=done.marks).model_dump(mode="json"),
        )
        for done in stored
    ]
    try:
        await events.publish_many(published)
    except (RedisError, OSError) as error:
        log.warning(
            "events not published",
            extra={
                "event": "worker.announce_failed",
                "consumer": consumer,
                "count": len(published),
                "error": type(error).__name__,
            },
        )
