"""The Redis events channel: pub/sub, so every API process hears every worker.

Fire-and-forget, as the `Events` protocol says: a subscriber that loses its subscription
backs off and subscribes again; what was published meanwhile is not replayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from sentiment_platform.bus import Event, decode_event, encode_event
from sentiment_platform.bus import scripts as lua
from sentiment_platform.retry import Backoff

log = logging.getLogger(__name__)


class RedisEvents:
    """Redis pub/sub: every API process hears every worker. Subscribers resubscribe on errors."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._redis = client
        self.channel = channel
        self._publish_script = client.register_script(lua.PUBLISH_MANY)

    async def publish(self, event: Event) -> None:
        await self._redis.publish(self.channel, encode_event(event))

    async def publish_many(self, events: Sequence[Event]) -> None:
        """One EVALSHA for the lot: a command per event cost the worker more than its insert."""
        if events:
            await self._publish_script(args=[self.channel, *map(encode_event, events)])

    def subscribe(self) -> AsyncIterator[Event]:
        return self._listen()

    async def _listen(self) -> AsyncIterator[Event]:
        backoff = Backoff()
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    try:
                        event = decode_event(message["data"])
                    except (ValueError, KeyError, TypeError):
                        log.warning(
                            "undecodable event skipped",
                            extra={"event": "events.undecodable", "channel": self.channel},
                        )
                        continue
                    yield event
            except (RedisError, OSError) as error:
                delay = backoff.next_delay()
                log.warning(
                    "events subscription lost",
                    extra={
                        "event": "events.subscription_lost",
                        "channel": self.channel,
                        "error": type(error).__name__,
                        "retry_in_s": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed since 8.2
