"""The `/ws` route: the process's hub serves every connection (see `api.hub`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket

from sentiment_platform.api.deps import ApiDep
from sentiment_platform.api.ws_protocol import AbortableWebSocketProtocol

# How uvicorn serves /ws (`serve`, the test servers and benchmarks/ws.py): the sans-I/O
# websockets protocol writes each frame straight to the transport, cheaper per send than the
# legacy one, and this subclass of it lets the hub abort a client that does not read
# (`api.ws_protocol`); per-message deflate would compress every frame again for every client.
UVICORN_WEBSOCKET_OPTIONS: dict[str, Any] = {
    "ws": AbortableWebSocketProtocol,
    "ws_per_message_deflate": False,
}

router = APIRouter()


@router.websocket("/ws")
async def live(websocket: WebSocket, api: ApiDep) -> None:
    """The route lives on the app from the start; the hub it serves is the lifespan's."""
    await api.hub.endpoint(websocket)
