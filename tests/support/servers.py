"""Real servers for the tests: the app under uvicorn in a thread, or `serve` as a process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sentiment_platform.api.deps import parts_of
from sentiment_platform.api.security import proxy_options
from sentiment_platform.api.websocket import UVICORN_WEBSOCKET_OPTIONS
from sentiment_platform.bus import Event, Events
from sentiment_platform.config import Settings
from sentiment_platform.main import create_app


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    """The app under uvicorn on its own loop in a thread; `publish` goes onto its events."""

    def __init__(self, settings: Settings, **uvicorn_options: Any) -> None:
        """`uvicorn_options` override `serve`'s (`ws="websockets-sansio"`: uvicorn's own)."""
        self.app = create_app(settings)
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            **proxy_options(settings),  # as `serve` runs it
            **(UVICORN_WEBSOCKET_OPTIONS | uvicorn_options),
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=[self.sock])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The WebSocket feed."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def publish(self, *events: Event) -> None:
        """Publish on the server's loop, as its worker would."""
        assert self.loop is not None
        server_events: Events = parts_of(self.app).runtime.events
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(server_events.publish_many(events), self.loop)
        )


SCRIPT = Path(sys.executable).with_name("sentiment-platform")
SOURCE = Path(__file__).resolve().parents[2] / "src"  # this checkout's code, not an install's


@contextmanager
def serve_process(
    env: dict[str, str], workdir: Path, *args: str, ready: str = "/livez"
) -> Iterator[str]:
    """`sentiment-platform serve` as its own process, as a user runs it; yields its base URL.

    Its output goes to `workdir/serve.log`; the process is stopped with SIGTERM on exit.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "serve.log"
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(SOURCE), **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--port", str(port), *args],
            cwd=workdir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    if httpx.get(base + ready, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"serve did not answer {ready}"
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(30)
