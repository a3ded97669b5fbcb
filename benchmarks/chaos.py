"""Chaos: load through the API into two workers while Redis, PostgreSQL and the workers die.

Starts a private PostgreSQL (initdb in a temp dir, needs root) and a private Redis (its own
port, append-only file in a temp dir) — never the shared services — then `serve` (Redis mode)
and two `worker`s. For `--duration` seconds it posts `--rate` posts/s through
POST /api/posts (a batch every 100 ms, open loop, each post with its own `post_id`; a batch
answered 503, 429 or not at all is sent again with the same `post_id`s after `Retry-After`,
as a producer should, until it is accepted), and `--readers` clients read
`/api/posts` and `/api/alerts` in turn, while it:

- restarts Redis `--redis-restarts` times (`kill -9`, down `--outage-s`, started again on its
  append-only file), and PostgreSQL `--postgres-restarts` times (`pg_ctl stop -m immediate`,
  down `--outage-s`, started again), spread over the run;
- pauses Redis `--redis-pauses` times (SIGSTOP for `--pause-s`, then SIGCONT: a hung Redis,
  as behind a network partition), spread over the run with the restarts;
- `kill -9`s a random worker every `--kill-every` seconds and starts it again at once under
  the same `--name` (it resumes its own pending entries).

Then it waits for the backlog to drain and prints, as text and as one JSON line last: posts
sent, answered 202 and stored, duplicates, lost (answered 202, not stored) and lost of those
sent (sent, never stored), responses by status, and for each fault the time from the
service's return to the first 202 and to the first post stored; for a pause also the reads'
p99 and the writes' answer times while Redis hung. It exits 1 if anything was lost or
duplicated or any answer was a 500.

    .venv/bin/python benchmarks/chaos.py                      # 5 minutes, 200 posts/s
    .venv/bin/python benchmarks/chaos.py --duration 30 --redis-restarts 1 \\
        --postgres-restarts 1 --kill-every 15 --analyzer tests.support.pipeline:KeywordAnalyzer
    .venv/bin/python benchmarks/chaos.py --duration 90 --rate 100 --redis-restarts 0 \\
        --postgres-restarts 0 --kill-every 1000 --redis-pauses 1 --pause-s 30   # Redis hung 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
            # On, so its fail-open path runs too; reads tell Redis once per 1 % of it.
            "RATE_LIMIT_PER_MINUTE": str(args.rate_limit),
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


RETRIED = frozenset({"503", "429", "timeout", "unreachable"})  # sent again, same post_ids
RETRY_FOR_S = 120.0  # after the load ends, how long a producer keeps retrying a batch


class Observer:
    """Every answer with its time, every request with its start and duration, and the stored
    count over time (polled in a thread)."""

    def __init__(self, dsn: str) -> None:
        self.answers: list[tuple[float, str]] = []
        self.writes: list[tuple[float, float, str]] = []  # (started, seconds, status)
        self.reads: list[tuple[float, float, str]] = []
        self.sent: set[str] = set()
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
    """Open loop: rate/10 posts every 100 ms, whatever the answers take; a batch refused or
    unanswered is sent again with the same post_ids, as `ingest` does: after Retry-After
    (at most 5 s) or a backoff doubling from 0.2 s to 5 s, whichever is longer."""
    batch = max(1, rate // 10)
    tasks: set[asyncio.Task[None]] = set()
    run = uuid.uuid4().hex[:6]
    give_up_at = time.monotonic() + seconds + RETRY_FOR_S

    async def send(client: httpx.AsyncClient, number: int) -> None:
        posts = [
            {"post_id": f"chaos-{run}-{number}-{i}", "source": "chaos",
             "content": random.choice(("I love it, great", "awful, broken again", "at noon"))}
            for i in range(batch)
        ]  # fmt: skip
        observer.sent.update(post["post_id"] for post in posts)
        attempt = 0
        while True:
            started = time.monotonic()
            wait_s = 0.0
            try:
                answer = await client.post("/api/posts", json=posts)
                status = str(answer.status_code)
                if answer.status_code == 202:
                    observer.accepted.update(answer.json()["post_ids"])
                wait_s = float(answer.headers.get("Retry-After", wait_s))
            except httpx.TimeoutException:
                status = "timeout"  # not counted as accepted: the API never said 202
            except httpx.TransportError:
                status = "unreachable"
            answered = time.monotonic()
            observer.answers.append((answered, status))
            observer.writes.append((started, answered - started, status))
            if status not in RETRIED or answered > give_up_at:
                return
            attempt += 1
            ceiling = min(5.0, 0.2 * 2 ** (attempt - 1))  # equal jitter, as retry.Backoff
            await asyncio.sleep(max(ceiling * random.uniform(0.5, 1.0), min(wait_s, 5.0)))

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


async def read_load(base: str, seconds: float, readers: int, observer: Observer) -> None:
    """`readers` closed loops, each reading a posts page and the alerts in turn."""
    paths = ("/api/posts?limit=20", "/api/alerts")
    end = time.monotonic() + seconds

    async def reader(client: httpx.AsyncClient, first: int) -> None:
        number = first
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                status = str((await client.get(paths[number % len(paths)])).status_code)
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError:
                status = "unreachable"
            observer.reads.append((started, time.monotonic() - started, status))
            number += 1
            await asyncio.sleep(0.05)

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await asyncio.gather(*(reader(client, first) for first in range(readers)))


async def faults(deployment: Deployment, args: argparse.Namespace, log: list[dict]) -> None:
    """The schedule: service restarts and pauses spread evenly, a worker killed every
    --kill-every s."""
    plan: list[tuple[float, str]] = []
    restarts = ["redis"] * args.redis_restarts + ["postgres"] * args.postgres_restarts
    order = [kind for pair in zip(restarts[::2], restarts[1::2], strict=False) for kind in pair]
    order += restarts[len(order) :]  # alternate redis / postgres where both are asked
    order += ["redis-pause"] * args.redis_pauses
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
        outage_s = args.pause_s if kind == "redis-pause" else args.outage_s
        await asyncio.to_thread(one_fault, deployment, kind, outage_s, log)


def one_fault(deployment: Deployment, kind: str, outage_s: float, log: list[dict]) -> None:
    down = time.monotonic()
    if kind == "redis":
        deployment.redis.kill()
        time.sleep(outage_s)
        deployment.redis.start()
    elif kind == "redis-pause":
        before = served(deployment.base)
        deployment.redis.pause()
        down = time.monotonic()  # after the scrape: the pause starts here
        time.sleep(outage_s)
        during = served(deployment.base)  # before SIGCONT: what the API answered meanwhile
        back = time.monotonic()  # before SIGCONT: nothing answered before it saw Redis back
        deployment.redis.resume()
        log.append({"fault": kind, "down_at": down, "back_at": back,
                    "served": {key: _minus(during.get(key, {}), before.get(key, {}))
                               for key in during}})  # fmt: skip
        return
    elif kind == "postgres":
        deployment.postgres.stop_immediately()
        time.sleep(outage_s)
        deployment.postgres.start()
    else:
        kind = random.choice(sorted(deployment.workers))
        deployment.kill_worker(kind)
        deployment.start_worker(kind)
    log.append({"fault": kind, "down_at": down, "back_at": time.monotonic()})


SERVED = {("POST", "/api/posts"): "write", ("GET", "/api/posts"): "read",
          ("GET", "/api/alerts"): "read"}  # fmt: skip
EDGES = ("0.25", "1.0", "2.5", "+Inf")  # of the API's request histogram, in seconds


def served(base: str) -> dict[str, dict[str, float]]:
    """The API's own request-duration histogram (its /metrics), cumulative by bucket, for
    writes and reads: the time the server took, without the load generator's queueing."""
    text = httpx.get(base + "/metrics", timeout=10).text
    counts: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("http_request_duration_seconds_bucket{"):
            continue
        labels_part, value = line.rsplit(" ", 1)
        labels = dict(
            pair.split("=", 1) for pair in labels_part[labels_part.index("{") + 1 : -1].split(",")
        )
        key = SERVED.get((labels["method"].strip('"'), labels["handler"].strip('"')))
        edge = labels["le"].strip('"')
        if key is not None and edge in EDGES:
            bucket = counts.setdefault(key, {})
            bucket[edge] = bucket.get(edge, 0.0) + float(value)
    return counts


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    """Requests answered in between, by bucket: `<=0.25`, `<=1.0`, `<=2.5`, `>2.5` seconds."""
    cumulative = [int(after.get(edge, 0) - before.get(edge, 0)) for edge in EDGES]
    shares = [cumulative[0]] + [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]
    names = [f"<={edge}" for edge in EDGES[:-1]] + [f">{EDGES[-2]}"]
    return dict(zip(names, shares, strict=True))


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
        t0 = time.monotonic()
        await asyncio.gather(
            load(deployment.base, args.rate, args.duration, observer),
            read_load(deployment.base, args.duration, args.readers, observer),
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
            **(_while_down(observer, entry) if entry["fault"] == "redis-pause" else {}),
        }
        for entry in fault_log
    ]
    result = {
        "duration_s": args.duration,
        "rate": args.rate,
        "sent": len(observer.sent),  # distinct post_ids offered, each retried until accepted
        "lost_of_sent": len(observer.sent - stored),  # sent, never stored
        "answered_202": len(observer.accepted),
        "stored": len(stored & observer.accepted),
        "stored_unacknowledged": len(stored - observer.accepted),  # a timed-out request's
        "duplicates": (len(ids) - len(stored)) + max(0, analyses - len(stored)),
        "lost": len(observer.accepted - stored),
        "responses": dict(Counter(status for _, status in observer.answers)),
        "reads": len(observer.reads),
        "read_p99_ms": _ms(_quantile([d for _, d, _ in observer.reads], 0.99)),
        "faults": recovery,
        "longest_to_first_202_s": _longest(recovery, "to_first_202_s"),
        "longest_to_first_stored_s": _longest(recovery, "to_first_stored_s"),
        "logs": str(workdir),
    }
    if args.samples:
        _write_samples(Path(args.samples), observer, t0, fault_log)
    keys = ("sent", "answered_202", "stored", "duplicates", "lost", "lost_of_sent", "responses")
    for key in (*keys, "read_p99_ms"):
        print(f"{key:>28}: {result[key]}")
    for fault in recovery:
        print(f"{'fault':>28}: {fault}")
    print(json.dumps(result))
    bad = (
        result["lost"]
        or result["lost_of_sent"]
        or result["duplicates"]
        or result["responses"].get("500")
    )
    return 1 if bad else 0


def _write_samples(path: Path, observer: Observer, t0: float, fault_log: list[dict]) -> None:
    """Every request as a JSON line `[kind, start_s, seconds, status]`, from the load's start,
    and the faults' times on the same clock."""
    with path.open("w") as out:
        for kind, samples in (("write", observer.writes), ("read", observer.reads)):
            for started, took, status in samples:
                out.write(json.dumps([kind, round(started - t0, 3), round(took, 4), status]) + "\n")
        for entry in fault_log:
            times = [round(entry["down_at"] - t0, 3), round(entry["back_at"] - t0, 3)]
            out.write(json.dumps(["fault", entry["fault"], *times]) + "\n")


def _while_down(observer: Observer, entry: dict) -> dict:
    """Reads started while the service hung, writes started and answered while it hung (one
    still waiting when it came back is answered in the catch-up: counted apart), and what
    the API's own histogram says it answered meanwhile (`served`)."""
    down, back = entry["down_at"], entry["back_at"]
    reads = [(d, s) for t, d, s in observer.reads if down <= t < back]
    writes = [(d, s) for t, d, s in observer.writes if down <= t and t + d <= back]
    spanning = [d for t, d, _ in observer.writes if down <= t < back < t + d]
    read_s = [d for d, _ in reads]
    write_s = [d for d, _ in writes]
    return {
        "server_answered_s": entry.get("served"),
        "reads": len(reads),
        "reads_not_200": sum(1 for _, status in reads if status != "200"),
        "read_p50_ms": _ms(_quantile(read_s, 0.5)),
        "read_p99_ms": _ms(_quantile(read_s, 0.99)),
        "read_max_ms": _ms(max(read_s, default=None)),
        "writes": len(writes),
        "write_statuses": dict(Counter(status for _, status in writes)),
        "write_p50_ms": _ms(_quantile(write_s, 0.5)),
        "write_p99_ms": _ms(_quantile(write_s, 0.99)),
        "write_max_ms": _ms(max(write_s, default=None)),
        "writes_answered_after_return": len(spanning),
    }


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least `q` of them at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


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
    parser.add_argument("--redis-pauses", type=int, default=0)
    parser.add_argument("--pause-s", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--samples", help="a file: every request as a JSON line")
    parser.add_argument("--rate-limit", type=int, default=1_000_000, help="per minute, per IP")
    parser.add_argument("--drain-s", type=float, default=180.0)
    parser.add_argument("--analyzer", default=None, help="module:Factory; default the model")
    sys.exit(asyncio.run(main(parser.parse_args())))
