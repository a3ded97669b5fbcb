"""The `/ws` hub: one per process, fed by the events channel, fanning out to every client.

Why it is shaped this way:

- One subscription to the events channel per process (Redis pub/sub in Redis mode), so a
  post analysed by any worker reaches the clients of every API process.
- Work is done once per message, not once per client: metrics are computed once per tick,
  each message is serialised once (orjson) and the same text is queued for every client.
- Analysed posts are gathered for `WS_FLUSH_MS` and fanned out together, so each client's
  writer wakes once per flush rather than once per post.
- Every client has a bounded queue drained by its own writer task. A client whose queue
  overflows (`WS_QUEUE_SIZE` messages) while its socket is backed up (the writer waits for
  it to drain) is dropped: a slow client never slows the others and never grows memory.
- A client that takes nothing for `WS_SEND_TIMEOUT_S` is ended too, traffic or none: by the
  kernel (`TCP_USER_TIMEOUT`), which also sees the megabytes waiting in its own buffers
  that no send of ours ever waited for, and by the hub's sweep of sends that have waited
  that long (the same rule where the kernel cannot help).
- A dropped client's connection is aborted (a TCP reset), not closed: a close frame would
  queue behind everything the client has not read, and a graceful close waits for it to
  read all that, so a client that reads nothing would keep its socket and the kernel's
  send buffer behind it for as long as it liked (`api.ws_protocol` has the how).
- At most `MAX_WS_CLIENTS` clients per process: each one costs a writer task, a queue and
  up to a kernel send buffer, so a flood of connections cannot take the process's memory or
  slow every client's fan-out. One more is accepted and closed at once with 1013 (try
  again later), which clients read as "reconnect later, maybe elsewhere".
- When the hub itself falls behind (more than `WS_QUEUE_SIZE` posts gathered in one flush:
  the process is out of CPU, no client is to blame), one-message-per-post clients get the
  newest `WS_QUEUE_SIZE` of them and the skip is counted and logged; dropping every client
  instead would only make them all reconnect into the same overload.
- CORS does not cover WebSockets and browsers send `Origin`: an origin other than the
  server's own host, loopback or one in `CORS_ORIGINS` is refused before the
  handshake (close 1008, which the server answers as HTTP 403). No `Origin` (a script, not
  a browser) is allowed.

Messages are `{"type", "data"}`: `metrics` (the `/api/metrics` body for the last
`ALERT_WINDOW_MINUTES`; with `?language=xx` and/or `?unique=true`, filtered as `/api/metrics`
filters it: `api/ws_metrics.py`), `post` (one analysed post item) and `alert` (the alert item). A
client that connects with `/ws?batch=1` gets one `posts` message per flush instead, `data`
being the list of post items: far fewer frames for a busy dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi import WebSocket, WebSocketDisconnect, status
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import Headers
from starlette.websockets import WebSocketDisconnected

from sentiment_platform.api.ws_metrics import (
    EVERY_POST,
    MAX_FILTERS,
    MetricsFilter,
    filter_of,
    metrics_texts,
)
from sentiment_platform.api.ws_protocol import abort_websocket, set_send_timeout
from sentiment_platform.bus import ALERT, POST_ANALYZED, Events, encode_envelope
from sentiment_platform.config import Settings
from sentiment_platform.retry import cancel_and_wait
from sentiment_platform.telemetry import WEBSOCKET_CLIENTS

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
RESUBSCRIBE_DELAY_S = 1.0
CLOSE_TRY_AGAIN_LATER = 1013


class _Client:
    """One connection: its pending texts and the event that wakes its writer."""

    __slots__ = (
        *("websocket", "batch", "filter", "pending", "wake", "writer", "sending_since"),
        "dropped",
    )

    def __init__(self, websocket: WebSocket, batch: bool, metrics: MetricsFilter) -> None:
        self.websocket = websocket
        self.batch = batch
        self.filter = metrics  # what its `metrics` messages count (`api/ws_metrics.py`)
        self.pending: deque[str] = deque()
        self.wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        # When the writer's send began; not None while it waits for the socket to drain,
        # that is while the client lags (a send that does not wait is never seen).
        self.sending_since: float | None = None
        self.dropped = False


class Hub:
    """One per API process: created, started and stopped by the lifespan."""

    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        events: Events,
        on_alert: Callable[[], None] = lambda: None,
    ) -> None:
        self._session_factory = session_factory
        self._events = events
        self._on_alert = on_alert  # an alert fired or resolved in some process
        self._window_minutes = settings.alert_window_minutes
        self._min_estimate_labels = settings.min_estimate_labels
        self._metrics_interval_s = settings.ws_metrics_interval_s
        self._flush_s = settings.ws_flush_ms / 1000
        self._queue_size = settings.ws_queue_size
        self._send_timeout_s = settings.ws_send_timeout_s
        self._sweep_s = min(1.0, settings.ws_send_timeout_s / 10)
        self._max_clients = settings.max_ws_clients
        self._allowed_origins = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)
        self._clients: set[_Client] = set()
        self._posts: list[dict[str, Any]] = []  # analysed posts waiting for the next flush
        self._posts_ready = asyncio.Event()
        # per filter, (monotonic time, text) of the last tick's metrics message
        self._metrics: dict[MetricsFilter, tuple[float, str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped_total = 0
        self.refused_total = 0  # past MAX_WS_CLIENTS
        self.skipped_posts_total = 0

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def start(self) -> list[asyncio.Task[None]]:
        """Start the hub's loops; returns their tasks (health reports them)."""
        WEBSOCKET_CLIENTS.set_function(lambda: self.client_count)
        self._tasks = [
            asyncio.create_task(self._consume(), name="ws-consume"),
            asyncio.create_task(self._flush_posts(), name="ws-flush"),
            asyncio.create_task(self._tick_metrics(), name="ws-metrics"),
            asyncio.create_task(self._sweep(), name="ws-sweep"),
        ]
        return self._tasks

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []

    # --- one connection ----------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        origin = websocket.headers.get("origin")
        if not self.origin_allowed(origin, websocket.headers):
            log.warning(
                "ws refused", extra={"event": "ws.refused", "reason": "origin", "origin": origin}
            )
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
            return
        await websocket.accept()
        if len(self._clients) >= self._max_clients:
            await self._refuse(websocket)
            return
        try:
            metrics = filter_of(websocket.query_params)
        except ValueError as error:  # a bad filter: closed at once, the field named
            await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=str(error))
            return
        in_use = {c.filter for c in self._clients} | {EVERY_POST}
        if metrics not in in_use and len(in_use) >= MAX_FILTERS:
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="too many metrics filters")
            return
        set_send_timeout(websocket, self._send_timeout_s)
        batch = websocket.query_params.get("batch") in ("1", "true")
        client = _Client(websocket, batch, metrics)
        self._clients.add(client)
        last = self._metrics.get(metrics)
        if last is not None and time.monotonic() - last[0] < 2 * self._metrics_interval_s:
            self._push(client, [last[1]])
        client.writer = asyncio.create_task(self._write(client))
        reader = asyncio.create_task(_receive_until_disconnect(websocket))
        try:
            await asyncio.wait({client.writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._clients.discard(client)
            await cancel_and_wait(client.writer, reader)
        if client.dropped and not abort_websocket(websocket):
            # A server without the abort (not `serve`'s uvicorn): close, with a deadline.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="client too slow"),
                    self._send_timeout_s,
                )

    async def _refuse(self, websocket: WebSocket) -> None:
        """One client past MAX_WS_CLIENTS: 1013 (try again later), right after the handshake."""
        self.refused_total += 1
        log.warning(
            "ws refused",
            extra={"event": "ws.refused", "reason": "max_clients", "clients": self.client_count},
        )
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_TRY_AGAIN_LATER, reason="too many clients")

    def origin_allowed(self, origin: str | None, headers: Headers) -> bool:
        """No Origin, the server's own host, loopback, or one of CORS_ORIGINS."""
        if origin is None or "*" in self._allowed_origins:
            return True
        if origin.rstrip("/").lower() in self._allowed_origins:
            return True
        parts = urlsplit(origin)
        if parts.hostname in LOOPBACK_HOSTS:
            return True
        return bool(parts.netloc) and parts.netloc.lower() == headers.get("host", "").lower()

    async def _write(self, client: _Client) -> None:
        websocket = client.websocket
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected):
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.pending:
                    client.sending_since = time.monotonic()
                    try:
                        await websocket.send_text(client.pending.popleft())
                    finally:
                        client.sending_since = None

    # --- fan-out -----------------------------------------------------------------------

    def _push(self, client: _Client, texts: Sequence[str]) -> None:
        if client.sending_since is not None and (
            len(client.pending) + len(texts) > self._queue_size
        ):
            self._drop(client, "queue_full")
            return
        client.pending.extend(texts)
        client.wake.set()

    def _drop(self, client: _Client, reason: str) -> None:
        """Stop feeding a client that fell behind; its handler aborts the connection."""
        client.dropped = True
        client.pending.clear()
        self._clients.discard(client)
        self.dropped_total += 1
        if client.writer is not None:
            client.writer.cancel()
        peer = client.websocket.client
        log.warning(
            "ws client dropped",
            extra={
                "event": "ws.dropped",
                "reason": reason,
                "peer": peer,
                "queue": self._queue_size,
                "send_timeout_s": self._send_timeout_s,
            },
        )

    async def _sweep(self) -> None:
        """Every tenth of WS_SEND_TIMEOUT_S (at most every second), drop the clients whose
        send has waited that long for their socket, traffic or none."""
        while True:
            await asyncio.sleep(self._sweep_s)
            stale = time.monotonic() - self._send_timeout_s
            for client in [
                c for c in self._clients if c.sending_since is not None and c.sending_since <= stale
            ]:
                self._drop(client, "send_timeout")

    def broadcast(self, texts: Sequence[str]) -> None:
        for client in list(self._clients):
            self._push(client, texts)

    async def _consume(self) -> None:
        """Feed the hub from the events channel; resubscribe if the subscription ends."""
        while True:
            try:
                async for event in self._events.subscribe():
                    if event.type == POST_ANALYZED:
                        self._posts.append(event.data)
                        self._posts_ready.set()
                    elif event.type == ALERT:
                        self._on_alert()
                        self.broadcast([encode_envelope("alert", event.data)])
            except Exception as error:  # noqa: BLE001 - keep the hub alive whatever the channel does
                log.warning(
                    "ws events subscription failed",
                    extra={"event": "ws.subscription_failed", "error": type(error).__name__},
                )
            await asyncio.sleep(RESUBSCRIBE_DELAY_S)

    async def _flush_posts(self) -> None:
        while True:
            await self._posts_ready.wait()
            await asyncio.sleep(self._flush_s)
            self._posts_ready.clear()
            posts, self._posts = self._posts, []
            clients = list(self._clients)
            single: list[str] = []
            if any(not c.batch for c in clients):
                single = [encode_envelope("post", p) for p in posts[-self._queue_size :]]
                if skipped := len(posts) - len(single):
                    self.skipped_posts_total += skipped
                    log.warning(
                        "ws hub behind",
                        extra={
                            "event": "ws.behind",
                            "skipped_posts": skipped,
                            "flush_posts": len(posts),
                        },
                    )
            batched = [encode_envelope("posts", posts)] if any(c.batch for c in clients) else []
            for client in clients:
                self._push(client, batched if client.batch else single)

    async def _tick_metrics(self) -> None:
        """Compute the metrics once per tick per filter its clients asked for (none while
        nobody listens), each sent to that filter's clients."""
        while True:
            started = time.monotonic()
            if self._clients:
                wanted = {client.filter for client in self._clients}
                self._metrics = await metrics_texts(
                    self._session_factory, wanted, self._window_minutes, self._min_estimate_labels
                )
                for client in list(self._clients):
                    if (made := self._metrics.get(client.filter)) is not None:
                        self._push(client, [made[1]])
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._metrics_interval_s - elapsed))


async def _receive_until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so its close and pings are processed."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
