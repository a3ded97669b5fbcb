"""`api.ws_protocol` against the installed uvicorn and the real kernel: the abort extension
reaches the app, and an abort frees the socket at once (a reset, no orphan left behind)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
import uvicorn
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sentiment_platform.api.websocket import UVICORN_WEBSOCKET_OPTIONS
from sentiment_platform.api.ws_protocol import abort_transport, abort_websocket
from tests.support.servers import free_socket

pytestmark = pytest.mark.asyncio


def sockets_between(port: int, peer: int) -> list[str]:
    """Every TCP socket on the machine from `port` to `peer`, orphans included."""
    return [
        c.status
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == peer
    ]


@contextmanager
def served(app: Any, ws: Any) -> Iterator[int]:
    """`app` under uvicorn with the given websocket protocol, in a thread; yields the port."""
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws=ws))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize(
    ("ws", "offered"),
    [(UVICORN_WEBSOCKET_OPTIONS["ws"], True), ("websockets-sansio", False)],
    ids=["ours", "uvicorn's"],
)
async def test_the_app_can_abort_under_our_protocol_only(ws: Any, offered: bool) -> None:
    answers: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        await websocket.send_text("hello")
        answers.append(abort_websocket(websocket))
        if not offered:
            await websocket.close(1013)

    with served(app, ws) as port:
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            assert await client.recv() == "hello"
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    await client.recv()
    assert answers == [offered]
    # Aborted: no close frame. uvicorn's own protocol can only close.
    assert (closed.value.rcvd is None) is offered


async def test_an_aborted_transport_leaves_no_socket_holding_unsent_data() -> None:
    loop = asyncio.get_running_loop()
    made: asyncio.Future[asyncio.Transport] = loop.create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.set_result(transport)  # type: ignore[arg-type]

    server = await loop.create_server(Accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    try:
        transport = await made
        transport.write(b"x" * 8_000_000)  # far more than the client will ever read
        await asyncio.sleep(0.2)
        peer = client.getsockname()[1]
        assert sockets_between(port, peer) == ["ESTABLISHED"]
        abort_transport(transport)
        # A plain transport.abort() leaves a FIN_WAIT1 orphan holding the unsent data.
        for _ in range(100):
            if not sockets_between(port, peer):
                break
            await asyncio.sleep(0.02)
        assert sockets_between(port, peer) == []
    finally:
        client.close()
        server.close()
