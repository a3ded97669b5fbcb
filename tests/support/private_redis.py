"""A Redis server of a test's own (a subprocess on a free port), so a fault test can kill and
restart it without touching the shared server other tests use.

It keeps an append-only file in its own directory, as a production Redis must for a 202 to
survive it: the AOF is written before Redis answers, so even `kill -9` loses no entry it
acknowledged (`appendfsync everysec` only defers the fsync, which matters if the machine
dies, not the process).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def available() -> str | None:
    """Why a private server cannot run here, or None when it can."""
    return None if shutil.which("redis-server") else "needs redis-server on PATH"


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: one picked from that range can be
    taken as the source port of an outgoing connection before the server binds it (CI saw a
    chaos run's API fail to bind so)."""
    top = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(20_000, top)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port between 20000 and {top}")


def _ephemeral_start() -> int:
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        start = 32_768  # Linux's default
    return max(start, 21_000)


class PrivateRedis:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-fault-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 15
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    assert time.monotonic() < deadline, "private redis did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as in a crash; what it acknowledged is in its append-only file."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open, as behind a network partition
        (connections are still accepted by the kernel; nothing is answered)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: it runs what it was sent meanwhile, and answers again."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
