"""202 means durable on the embedded default: posts `serve` accepted but had not analysed
when it was killed with SIGKILL are analysed and stored, once each, by the next `serve`."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("sentiment-platform")


def start_serve(workdir: Path, port: int, **env: str) -> subprocess.Popen[bytes]:
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO / "src"), **env}
    log = (workdir / f"serve-{port}.log").open("ab")
    process = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port)],
        cwd=workdir,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, (workdir / f"serve-{port}.log").read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_posts_answered_202_survive_kill_9_of_serve(tmp_path: Path) -> None:
    port = free_port()
    # The first run's model is an LLM nobody answers for: the worker waits the outage out
    # and every accepted post is still queued when the process is killed.
    stalled = start_serve(
        tmp_path,
        port,
        ANALYZER_BACKENDS="llm",
        LLM_PROVIDER="openai",
        LLM_API_KEY="sk-test-unreachable-0123456789",
        LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        LLM_MAX_ATTEMPTS="1",
    )
    accepted: set[str] = set()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for batch in range(10):
                body = [
                    {"source": "test", "content": f"I love this, great work #{batch}-{i}"}
                    for i in range(100)
                ]
                answer = http.post("/api/posts", json=body)
                assert answer.status_code == 202, answer.text
                accepted.update(answer.json()["post_ids"])
            assert http.get("/api/posts").json()["total"] == 0  # nothing analysed yet
    finally:
        stalled.send_signal(signal.SIGKILL)
        stalled.wait(10)
    with sqlite3.connect(tmp_path / "sentiment.queue.db") as journal:
        assert journal.execute("SELECT count(*) FROM bus_entries").fetchone()[0] == 1_000

    # The next start has no configuration at all: the embedded default.
    restarted = start_serve(tmp_path, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while http.get("/api/posts", params={"limit": 1}).json()["total"] < 1_000:
                assert time.monotonic() < deadline, "the recovered posts were not stored"
                time.sleep(0.2)
            page = http.get("/api/posts", params={"limit": 100}).json()
            assert all(item["sentiment"] for item in page["items"])
            health = http.get("/api/health").json()
            assert health["backlog"] == 0 and health["tasks"]["worker"] == "ok"
    finally:
        restarted.terminate()
        restarted.wait(30)
    with sqlite3.connect(tmp_path / "sentiment.db") as db:
        ids = [row[0] for row in db.execute("SELECT post_id FROM social_media_posts")]
        analysed = db.execute("SELECT count(*) FROM sentiment_analysis").fetchone()[0]
    assert len(ids) == len(set(ids)) == analysed == 1_000  # each stored once
    assert set(ids) == accepted
    with sqlite3.connect(tmp_path / "sentiment.queue.db") as journal:
        assert journal.execute("SELECT count(*) FROM bus_entries").fetchone()[0] == 0
