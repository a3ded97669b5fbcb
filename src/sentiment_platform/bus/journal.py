"""The in-process bus's journal: every accepted entry in a SQLite file until it is acked.

`publish` commits the entries here before it returns, so a 202 survives `kill -9`; `ack`
deletes them; the next start reads back whatever is left and delivers it again. Dead
letters are kept here too (the newest REDIS_STREAM_MAXLEN), as `<stream>:dead` keeps them. Plain
`sqlite3` (WAL; `synchronous=NORMAL` is durable against a process crash, which is the
promise, though not against losing power) run off the event loop by the caller.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bus_entries (seq INTEGER PRIMARY KEY, data TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bus_dead (id INTEGER PRIMARY KEY, fields TEXT NOT NULL)",
)


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            for statement in SCHEMA:
                self._db.execute(statement)

    def load(self) -> list[tuple[int, str]]:
        """Every entry not yet acked, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, data FROM bus_entries ORDER BY seq").fetchall()
        return [(int(seq), str(data)) for seq, data in rows]

    def append(self, first_seq: int, payloads: Sequence[str]) -> None:
        """Commit entries numbered from `first_seq`: when this returns they are on disk."""
        rows = [(first_seq + i, data) for i, data in enumerate(payloads)]
        with self._lock, self._db:
            self._db.executemany("INSERT INTO bus_entries (seq, data) VALUES (?, ?)", rows)

    def remove(self, seqs: Iterable[int]) -> None:
        rows = [(seq,) for seq in seqs]
        if rows:
            with self._lock, self._db:
                self._db.executemany("DELETE FROM bus_entries WHERE seq = ?", rows)

    def dead_letter(self, letters: Sequence[tuple[int, dict[str, str]]], keep: int) -> None:
        """Move entries to the dead letters in one transaction, keeping the newest `keep`."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO bus_dead (fields) VALUES (?)",
                [(json.dumps(fields),) for _, fields in letters],
            )
            self._db.executemany(
                "DELETE FROM bus_entries WHERE seq = ?", [(seq,) for seq, _ in letters]
            )
            self._db.execute(
                "DELETE FROM bus_dead WHERE id <= (SELECT max(id) FROM bus_dead) - ?", (keep,)
            )

    def load_dead(self, keep: int) -> list[dict[str, str]]:
        """The newest `keep` dead letters, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT fields FROM bus_dead ORDER BY id DESC LIMIT ?", (keep,)
            ).fetchall()
        return [json.loads(fields) for (fields,) in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
