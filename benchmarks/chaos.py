"""Chaos: load through the API into two workers while Redis, PostgreSQL and the workers die.

Starts a private PostgreSQL (initdb in a temp dir, needs root) and a private Redis (its own
port, append-only file in a temp dir) — never the shared services — then `serve` (Redis mode)
and two `worker`s. For `--duration` seconds it posts `--rate` posts/s through
POST /api/posts (a batch every 100 ms, open loop), while it:

- restarts Redis `--redis-restarts` times (`kill -9`, down `--outage-s`, started again on its
  append-only file), and PostgreSQL `--postgres-restarts` times (`pg_ctl stop -m immediate`,
  down `--outage-s`, started again), spread over the run;
- `kill -9`s a random worker every `--kill-every` seconds and starts it again at once under
  the same `--name` (it resumes its own pending entries).

Then it waits for the backlog to drain and prints, as text and as one JSON line last: posts
answered 202, posts stored, duplicates, lost (answered 202, not stored), responses by
status, and for each fault the time from the service's return to the first 202 and to the
first post stored. It exits 1 if anything was lost or duplicated or any answer was a 500.

    .venv/bin/python benchmarks/chaos.py                      # 5 minutes, 200 posts/s
    .venv/bin/python benchmarks/chaos.py --duration 30 --redis-restarts 1 \\
        --postgres-restarts 1 --kill-every 15 --analyzer tests.support.pipeline:KeywordAnalyzer
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.private_postgres import PrivatePostgres, available  # noqa: E402
from tests.support.private_redis import PrivateRedis, free_port  # noqa: E402

SCRIPT = str(Path(sys.executable).with_name("sentiment-platform"))


class Deployment:
    """The processes under test, and the private services they run on."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.workdir = workdir
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis()
        self.port = free_port()
        self.analyzer = args.analyzer
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
            "DATABASE_URL": self.postgres.url,
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "REDIS_STREAM_NAME": "chaos_posts",
            "RATE_LIMIT_PER_MINUTE": "1000000",  # on, so its fail-open path runs too
            "CLAIM_IDLE_MS": "10000",
            "WORKER_BLOCK_MS": "200",
            "WORKER_BATCH_SIZE": "200",
            "EMBEDDED_THREADS": "1",
            "LOG_LEVEL": "WARNING",
        }
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.api: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [SCRIPT, *args], env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def start(self) -> None:
        self.postgres.start()
        self.redis.start()
        subprocess.run([SCRIPT, "init-db"], env=self.env, check=True, capture_output=True)
        self.api = self._spawn("api", "serve", "--port", str(self.port))
        for name in ("chaos-w1", "chaos-w2"):
            self.start_worker(name)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.api.poll() is None, (self.workdir / "api.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API did not become ready"
            time.sleep(0.3)

    def start_worker(self, name: str) -> None:
        extra = ("--analyzer", self.analyzer) if self.analyzer else ()
        self.workers[name] = self._spawn(name, "worker", "--name", name, *extra)

    def kill_worker(self, name: str) -> None:
        process = self.workers[name]
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        for process in [*self.workers.values(), self.api]:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.redis.remove()
        self.postgres.remove()


class Observer:
    """Every answer with its time, and the stored count over time (polled in a thread)."""

    def __init__(self, dsn: str) -> None:
        self.answers: list[tuple[float, str]] = []
        self.accepted: set[str] = set()
        self.stored_at: list[tuple[float, int]] = []
        self._dsn = dsn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._poll(),), daemon=True)

    async def _poll(self) -> None:
        connection: asyncpg.Connection | None = None
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = await asyncpg.connect(self._dsn, timeout=2)
                count = await connection.fetchval("SELECT count(*) FROM sentiment_analysis")
                self.stored_at.append((time.monotonic(), int(count)))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                connection = None
            await asyncio.sleep(0.2)
        if connection is not None:
            await connection.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def first_202_after(self, moment: float) -> float | None:
        return next(
            (t - moment for t, status in self.answers if t >= moment and status == "202"), None
        )

    def first_stored_after(self, moment: float) -> float | None:
        """From the first count read after `moment` to the first that is higher: a batch
        committed just before the fault is never credited to the return (this errs long,
        by up to one 0.2 s poll, never short)."""
        after = [(t, n) for t, n in self.stored_at if t >= moment]
        if not after:
            return None
        base = after[0][1]
        return next((t - moment for t, n in after if n > base), None)


async def load(base: str, rate: int, seconds: float, observer: Observer) -> None:
    """Open loop: rate/10 posts every 100 ms, whatever the answers take."""
    batch = max(1, rate // 10)
    tasks: set[asyncio.Task[None]] = set()
    run = uuid.uuid4().hex[:6]

    async def send(client: httpx.AsyncClient, number: int) -> None:
        posts = [
            {"post_id": f"chaos-{run}-{number}-{i}", "source": "chaos",
             "content": random.choice(("I love it, great", "awful, broken again", "at noon"))}
            for i in range(batch)
        ]  # fmt: skip
        try:
            answer = await client.post("/api/posts", json=posts)
            status = str(answer.status_code)
            if answer.status_code == 202:
                observer.accepted.update(answer.json()["post_ids"])
        except httpx.TimeoutException:
            status = "timeout"  # not counted as accepted: the API never said 202
        except httpx.TransportError:
            status = "unreachable"
        observer.answers.append((time.monotonic(), status))

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
        started = time.monotonic()
        number = 0
        while time.monotonic() - started < seconds:
            task = asyncio.create_task(send(client, number))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            await asyncio.sleep(max(0.0, started + number * 0.1 - time.monotonic()))
        await asyncio.gather(*tasks)


async def faults(deployment: Deployment, args: argparse.Namespace, log: list[dict]) -> None:
    """The schedule: service restarts spread evenly, a worker killed every --kill-every s."""
    plan: list[tuple[float, str]] = []
    restarts = ["redis"] * args.redis_restarts + ["postgres"] * args.postgres_restarts
    order = [kind for pair in zip(restarts[::2], restarts[1::2], strict=False) for kind in pair]
    order += restarts[len(order) :]  # alternate redis / postgres where both are asked
    for i, kind in enumerate(order):
        plan.append((args.duration * (i + 1) / (len(order) + 1), kind))
    kill_at = args.kill_every
    while kill_at < args.duration:
        plan.append((kill_at, "worker"))
        kill_at += args.kill_every
    plan.sort()
    started = time.monotonic()
    for at, kind in plan:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        await asyncio.to_thread(one_fault, deployment, kind, args.outage_s, log)


def one_fault(deployment: Deployment, kind: str, outage_s: float, log: list[dict]) -> None:
    down = time.monotonic()
    if kind == "redis":
        deployment.redis.kill()
        time.sleep(outage_s)
        deployment.redis.start()
    elif kind == "postgres":
        deployment.postgres.stop_immediately()
        time.sleep(outage_s)
        deployment.postgres.start()
    else:
        kind = random.choice(sorted(deployment.workers))
        deployment.kill_worker(kind)
        deployment.start_worker(kind)
    log.append({"fault": kind, "down_at": down, "back_at": time.monotonic()})


async def drain(deployment: Deployment, observer: Observer, timeout_s: float) -> None:
    """Until every accepted post is stored (or the timeout)."""
    dsn = deployment.postgres.url.replace("+asyncpg", "")
    deadline = time.monotonic() + timeout_s
    connection = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            ids = await connection.fetch("SELECT post_id FROM social_media_posts")
            if observer.accepted <= {row["post_id"] for row in ids}:
                return
            await asyncio.sleep(1)
    finally:
        await connection.close()


async def main(args: argparse.Namespace) -> int:
    reason = available()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    deployment = Deployment(args, workdir)
    fault_log: list[dict] = []
    try:
        deployment.start()
        dsn = deployment.postgres.url.replace("+asyncpg", "")
        observer = Observer(dsn)
        observer.start()
        await asyncio.gather(
            load(deployment.base, args.rate, args.duration, observer),
            faults(deployment, args, fault_log),
        )
        await drain(deployment, observer, args.drain_s)
        observer.stop()
        connection = await asyncpg.connect(dsn)
        rows = await connection.fetch("SELECT post_id FROM social_media_posts")
        analyses = await connection.fetchval("SELECT count(*) FROM sentiment_analysis")
        await connection.close()
    finally:
        deployment.stop()
    ids = [row["post_id"] for row in rows]
    stored = set(ids)
    recovery = [
        {
            "fault": entry["fault"],
            "down_s": round(entry["back_at"] - entry["down_at"], 1),
            "to_first_202_s": _round(observer.first_202_after(entry["back_at"])),
            "to_first_stored_s": _round(observer.first_stored_after(entry["back_at"])),
        }
        for entry in fault_log
    ]
    result = {
        "duration_s": args.duration,
        "rate": args.rate,
        "answered_202": len(observer.accepted),
        "stored": len(stored & observer.accepted),
        "stored_unacknowledged": len(stored - observer.accepted),  # a timed-out request's
        "duplicates": (len(ids) - len(stored)) + max(0, analyses - len(stored)),
        "lost": len(observer.accepted - stored),
        "responses": dict(Counter(status for _, status in observer.answers)),
        "faults": recovery,
        "longest_to_first_202_s": _longest(recovery, "to_first_202_s"),
        "longest_to_first_stored_s": _longest(recovery, "to_first_stored_s"),
        "logs": str(workdir),
    }
    for key in ("answered_202", "stored", "duplicates", "lost", "responses"):
        print(f"{key:>28}: {result[key]}")
    for fault in recovery:
        print(f"{'fault':>28}: {fault}")
    print(json.dumps(result))
    bad = result["lost"] or result["duplicates"] or result["responses"].get("500")
    return 1 if bad else 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _longest(recovery: list[dict], key: str) -> float | None:
    values = [fault[key] for fault in recovery if fault[key] is not None]
    return max(values) if values else None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--postgres-restarts", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=60.0)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=180.0)
    parser.add_argument("--analyzer", default=None, help="module:Factory; default the model")
    sys.exit(asyncio.run(main(parser.parse_args())))
