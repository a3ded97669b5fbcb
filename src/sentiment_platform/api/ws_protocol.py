"""How uvicorn serves `/ws`, and how the hub ends a connection whose peer does not read.

ASGI gives an app no way to abort a connection. `websocket.close` starts a closing
handshake: uvicorn first waits until its write buffer has room again (it never does while
the peer reads nothing), and when the app is done it closes the transport gracefully, which
waits for the peer to read everything already queued. A client that stops reading therefore
keeps its socket, and the kernel send buffer behind it, until the client itself gives up.
Nor does the app see data waiting in the kernel: a few megabytes fit there, so a client
can stop reading without any send of the app ever waiting.

So `/ws` is served by a subclass of uvicorn's sans-I/O websockets protocol (the one `auto`
picks) that offers the app its socket's controls as the `SOCKET_EXTENSION` entry of the
scope: `abort` resets the connection at once, and `send_timeout` lets the kernel end it when
queued data has not been taken for that long (`TCP_USER_TIMEOUT`, which also counts a
receiver keeping its window shut). The hub uses them through `abort_websocket` and
`set_send_timeout`, which answer False under a server that does not offer them (plain
`uvicorn --ws auto`, another ASGI server); the hub then has its own send deadline and a
close with a deadline.

Passing a protocol class as uvicorn's `ws` option is uvicorn's own extension point. The
subclass relies on three things of uvicorn's protocol: `scope` (set when the handshake
request is read, before `run_asgi` runs the app), `transport` (set in `connection_made`)
and `loop`; `tests/integration/test_ws_protocol.py` checks them against the installed
uvicorn, and `test_ws_slow_readers.py` the effect on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SOCKET_EXTENSION = "sentiment_platform.socket"
SHUTDOWN_GRACE_S = 5.0  # at server shutdown, how long a client gets to read its close frame
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol, plus its socket's controls for the app."""

    async def run_asgi(self) -> None:
        extensions = self.scope.setdefault("extensions", {})
        extensions[SOCKET_EXTENSION] = {"abort": self.abort, "send_timeout": self.send_timeout}
        await super().run_asgi()

    def abort(self) -> None:
        abort_transport(self.transport)

    def send_timeout(self, seconds: float) -> bool:
        return limit_unsent_time(self.transport, seconds)

    def shutdown(self) -> None:
        """At server shutdown uvicorn sends each client a close frame, closes gracefully and
        then waits for every connection to be gone: one whose peer reads nothing would hold
        the server's exit forever. It gets SHUTDOWN_GRACE_S, then it is aborted (a no-op
        for a connection that is gone by then)."""
        super().shutdown()
        self.loop.call_later(SHUTDOWN_GRACE_S, self.abort)


def abort_transport(transport: asyncio.Transport) -> None:
    """Close a connection now, dropping what it has not sent yet.

    `transport.abort()` alone discards asyncio's buffer but closes the socket normally: the
    kernel then keeps the orphaned socket, and the unsent data in its send buffer, while it
    goes on offering that data to a peer whose window stays shut. A zero linger makes the
    close a reset, which frees both at once.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing left to free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


def limit_unsent_time(transport: asyncio.BaseTransport, seconds: float) -> bool:
    """Have the kernel end the connection when data it holds for the peer has not been
    taken for `seconds` (TCP_USER_TIMEOUT, Linux); False where it cannot."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, round(seconds * 1000)))
    except OSError:
        return False
    return True


def _control(websocket: WebSocket, name: str) -> Callable[..., Any] | None:
    extensions: dict[str, Any] = websocket.scope.get("extensions") or {}
    control: Callable[..., Any] | None = (extensions.get(SOCKET_EXTENSION) or {}).get(name)
    return control


def abort_websocket(websocket: WebSocket) -> bool:
    """Abort the connection if the server offers it; False if it does not."""
    abort = _control(websocket, "abort")
    if abort is None:
        return False
    abort()
    return True


def set_send_timeout(websocket: WebSocket, seconds: float) -> bool:
    """Let the kernel end the connection when the client takes nothing for `seconds`;
    False where the server or the platform does not offer it."""
    send_timeout = _control(websocket, "send_timeout")
    return bool(send_timeout(seconds)) if send_timeout is not None else False
