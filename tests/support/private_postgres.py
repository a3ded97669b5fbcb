"""A PostgreSQL server of a test's own (initdb in a temp dir), so a fault test can stop and
start it without touching the shared server other tests use."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> str | None:
    """Why a private server cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root to run initdb as the postgres user"
    if not (BIN / "initdb").exists() or shutil.which("runuser") is None:
        return f"needs {BIN}/initdb and runuser"
    return None


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pg-fault-"))
        shutil.chown(self.dir, "postgres", "postgres")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(
            BIN / "initdb", "-D", self.dir / "data", "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def _as_postgres(self, *command: object) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, command)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            BIN / "pg_ctl",
            "-D",
            self.dir / "data",
            "-o",
            options,
            "-l",
            self.dir / "log",
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(BIN / "pg_ctl", "-D", self.dir / "data", "-m", "fast", "-w", "stop")

    def stop_immediately(self) -> None:
        """As in a crash: no checkpoint, connections cut; recovery replays the WAL on start."""
        self._as_postgres(BIN / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
