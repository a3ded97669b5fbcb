"""A real webhook receiver on 127.0.0.1 for the notification tests: records every POST (path,
headers, raw body) and answers the statuses it is told to, then 200. With `tls` (a server
context) it speaks https and records the name each client asked for (SNI)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.servers import free_socket


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """`failures[path]`: statuses answered, in turn, before the 200s."""

    port: int
    received: list[Received] = field(default_factory=list)
    failures: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    tls: ssl.SSLContext | None = None
    server_names: list[str | None] = field(default_factory=list)  # SNI, with `tls`
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def delivered(self, path: str | None = None) -> list[Received]:
        return [r for r in self.received if r.status == 200 and path in (None, r.path)]

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                pending = receiver.failures[self.path]
                status = pending.popleft() if pending else 200
                receiver.received.append(
                    Received(self.path, dict(self.headers.items()), body, status)
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            self.tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def unused_port() -> int:
    """A port nothing listens on (yet): a receiver that is down."""
    sock = free_socket()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate valid for the DNS name `name` only (no IP address), and its key, made by
    the openssl command line."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )
    return cert, key
