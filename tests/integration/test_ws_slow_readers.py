"""/ws clients that never read, and too many clients, against a real uvicorn server.

The server runs in a thread of this process (`ThreadedServer`), so its sockets are in this
process's connection table. The clients are raw sockets with a tiny receive buffer that
complete the WebSocket handshake and never read again: the server's sends back up at once,
as they do for a stalled browser tab or a client that is gone without a FIN.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sentiment_platform.api.deps import parts_of
from sentiment_platform.api.ws_protocol import SHUTDOWN_GRACE_S
from sentiment_platform.bus import POST_ANALYZED, Event
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.domain import Analysis, Emotion, Post, PostView, Sentiment, utcnow
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.asyncio

CLIENTS = 20
POST_CONTENT = "x" * 10_000  # the longest a post may be
MARGIN_S = 2.0  # publishing the traffic, the hub's sweep, a busy test machine


async def settings_for(tmp_path: Path, **fields: object) -> Settings:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}",
        embedded_worker=False,
        ws_flush_ms=5,
        **fields,  # type: ignore[arg-type]
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    return settings


def never_reading_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then reads nothing at all."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        .encode()
    )  # fmt: skip
    response = b""
    while not response.endswith(b"\r\n\r\n"):  # a byte at a time: no frame is read
        byte = sock.recv(1)
        assert byte, f"closed during the handshake: {response!r}"
        response += byte
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


@contextlib.contextmanager
def never_reading_clients(port: int, count: int) -> Iterator[set[int]]:
    """`count` such clients; yields their local ports."""
    socks = [never_reading_client(port) for _ in range(count)]
    try:
        yield {sock.getsockname()[1] for sock in socks}
    finally:
        for sock in socks:
            sock.close()


def server_sockets(port: int, peers: set[int], machine: bool = False) -> list[str]:
    """The server's TCP sockets to those peers: this process's (where the server runs), or
    with `machine` every socket on the machine, an orphan left after close() included (one
    still holds its send buffer in the kernel)."""
    connections = (
        psutil.net_connections("tcp") if machine else psutil.Process().net_connections("tcp")
    )
    return [
        f"{c.laddr.port}->{c.raddr.port} {c.status}"
        for c in connections
        if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port in peers
    ]


def post_event(post_id: str) -> Event:
    post = Post(post_id=post_id, source="test", content=POST_CONTENT)
    analysis = Analysis(post_id, Sentiment.POSITIVE, 0.9, Emotion.JOY, 0.8, "test", utcnow())
    return Event(POST_ANALYZED, PostView.of(post, analysis).model_dump(mode="json"))


async def feed(server: ThreadedServer, posts: int) -> None:
    """Analysed posts in small bursts (a few per hub flush), as a busy worker announces them."""
    for start in range(0, posts, 10):
        await server.publish(*(post_event(f"p{i}") for i in range(start, min(posts, start + 10))))
        await asyncio.sleep(0.005)


async def until(condition: Callable[[], bool], deadline: float) -> bool:
    """Polls `condition` until it holds or the (monotonic) deadline passes: what it looks at
    changes in the server's thread or in the kernel, with no event to wait on."""
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.parametrize(
    ("case", "posts", "fields", "within_s"),
    [
        # 6 MB a client, more than a socket's buffers hold, and room for every post: the
        # sends wait, and only the send timeout can end these clients.
        ("sends_wait", 600, {"ws_queue_size": 100_000, "ws_send_timeout_s": 1.0}, 1.0),
        # 40 KB a client: under asyncio's buffer limit, so no send ever waits; the unread
        # data sits in the kernel's buffers, where only the kernel sees it.
        ("unsent_in_kernel", 4, {"ws_queue_size": 100_000, "ws_send_timeout_s": 1.0}, 1.0),
        # A few messages of room: the queue overflows long before the (long) timeout.
        ("queue_full", 600, {"ws_queue_size": 8, "ws_send_timeout_s": 60.0}, 0.0),
    ],
)
async def test_clients_that_never_read_lose_their_sockets_within_the_timeout(
    tmp_path: Path, case: str, posts: int, fields: dict[str, object], within_s: float
) -> None:
    settings = await settings_for(tmp_path, **fields)
    with (
        ThreadedServer(settings) as server,
        never_reading_clients(server.port, CLIENTS) as peers,
    ):
        hub = parts_of(server.app).hub
        assert len(server_sockets(server.port, peers)) == CLIENTS
        started = time.monotonic()
        await feed(server, posts)  # 10 KB each
        gone = await until(
            lambda: not server_sockets(server.port, peers), started + within_s + MARGIN_S
        )
        left = server_sockets(server.port, peers)
        assert gone, f"{len(left)} sockets still open ({case}): {left[:3]}"
        assert hub.client_count == 0
        if case == "queue_full":
            assert hub.dropped_total == CLIENTS
        # Nor does an orphan keep the unsent data in the kernel (a close, not a reset, would).
        assert server_sockets(server.port, peers, machine=True) == []

        # The server still serves a client that reads.
        async with connect(server.url) as ws:
            await server.publish(post_event("after"))
            async with asyncio.timeout(5):
                while b'"after"' not in (await ws.recv(decode=False)):
                    pass


async def test_a_connection_past_max_ws_clients_is_closed_with_1013(tmp_path: Path) -> None:
    settings = await settings_for(tmp_path, max_ws_clients=2)
    with ThreadedServer(settings) as server:
        hub = parts_of(server.app).hub

        async def clients_become(count: int) -> None:
            """The server's thread registers a client just after its handshake answer."""
            assert await until(lambda: hub.client_count == count, time.monotonic() + 5)

        async with connect(server.url) as first, connect(server.url):
            await clients_become(2)
            async with connect(server.url) as third:
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(5):
                        await third.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert hub.client_count == 2 and hub.refused_total == 1

            await first.close()  # a slot frees: the next one is served
            await clients_become(1)
            async with connect(server.url) as fourth:
                await clients_become(2)
                assert hub.refused_total == 1
                await fourth.send("still here?")  # and it stays open
                await asyncio.sleep(0.2)
                assert fourth.state.name == "OPEN"


async def test_the_server_stops_in_time_despite_clients_that_never_read(tmp_path: Path) -> None:
    # A send timeout longer than the test: only the shutdown's own grace can end them.
    settings = await settings_for(tmp_path, ws_queue_size=100_000, ws_send_timeout_s=60.0)
    server = ThreadedServer(settings)
    with server, never_reading_clients(server.port, 3) as peers:
        await feed(server, 600)
        await asyncio.sleep(0.2)
        assert len(server_sockets(server.port, peers)) == 3
        stopping = time.monotonic()
        server.server.should_exit = True  # what SIGTERM does
        server.thread.join(SHUTDOWN_GRACE_S + MARGIN_S)
        assert not server.thread.is_alive(), "the server still waits for clients that never read"
        assert time.monotonic() - stopping < SHUTDOWN_GRACE_S + MARGIN_S
        assert server_sockets(server.port, peers, machine=True) == []


async def test_where_the_server_offers_no_socket_controls_the_hub_still_drops_them(
    tmp_path: Path,
) -> None:
    """uvicorn's own protocol: no kernel send timeout and no abort, so the hub's sweep of
    waiting sends is what notices (it can only close, which waits on the client)."""
    settings = await settings_for(tmp_path, ws_queue_size=100_000, ws_send_timeout_s=1.0)
    with (
        ThreadedServer(settings, ws="websockets-sansio") as server,
        never_reading_clients(server.port, CLIENTS),
    ):
        hub = parts_of(server.app).hub
        started = time.monotonic()
        await feed(server, 600)
        assert await until(lambda: hub.dropped_total == CLIENTS, started + 1.0 + MARGIN_S)
        assert hub.client_count == 0
