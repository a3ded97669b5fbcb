"""Which posts of a write are duplicates: already stored, or repeated within the request.

The store keeps one post per `post_id` (`store.save_batch`), so a copy sent again used to
be answered 202 and dropped by the worker without a word. Asking the store first lets the
answer say which posts were not taken again, which is what makes a retry with the same
post_id visible as well as harmless.

The question is asked of the store only for post_ids the producer chose (a generated one is
new by construction), in one read of the unique index, and never stands between a producer
and the bus: when the store is down or busy past `CHECK_S`, the posts are queued unchecked,
as they were before (the bus holds them until the store is back, and the worker still
stores each post_id once), and the answer says the check was skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sentiment_platform import store
from sentiment_platform.api.deps import ApiParts
from sentiment_platform.domain import Post
from sentiment_platform.errors import ServiceUnavailable

CHECK_S = 1.0  # a write waits at most this long for the store's answer, then goes unchecked

log = logging.getLogger(__name__)


async def already_stored(api: ApiParts, posts: Sequence[Post]) -> set[str] | None:
    """The producer-chosen post_ids of `posts` the store holds; None when it could not say."""
    chosen = list(
        dict.fromkeys(post.post_id for post in posts if "post_id" in post.model_fields_set)
    )
    if not chosen:
        return set()
    try:
        async with asyncio.timeout(CHECK_S):
            async with api.reading() as connection:
                return await store.stored_post_ids(connection, chosen)
    except (TimeoutError, ServiceUnavailable, DBAPIError, PoolTimeoutError, OSError) as error:
        log.warning(
            "duplicate check skipped: the store did not answer in time; posts queued unchecked",
            extra={"event": "posts.duplicates_unchecked", "error": type(error).__name__},
        )
        return None


def split_duplicates(posts: Sequence[Post], stored: set[str]) -> tuple[list[Post], list[str]]:
    """The posts to queue (the first of each post_id not stored), and the post_ids left out
    (each once, in the request's order)."""
    fresh: list[Post] = []
    seen: set[str] = set()
    duplicates: dict[str, None] = {}
    for post in posts:
        if post.post_id in stored or post.post_id in seen:
            duplicates[post.post_id] = None
        else:
            fresh.append(post)
        seen.add(post.post_id)
    return fresh, list(duplicates)
