"""Soak: minutes of mixed load on a real deployment, watching throughput, latency and memory.

Starts one API process and N workers on PostgreSQL + Redis (the production shape), then for
`--minutes` ingests posts at `--rate`/s through POST /api/posts, runs `--readers` clients
looping over GET /api/posts and /api/metrics, and keeps `--ws-clients` WebSocket clients
connected the way the dashboard is (`/ws?batch=1`). Prints throughput, p50/p99 per endpoint,
errors, WebSocket delivery latency, and the API process's resident memory over time (it
must level off, not climb).

    .venv/bin/python benchmarks/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil
from websockets.asyncio.client import connect

SCRIPT = str(Path(sys.executable).with_name("sentiment-platform"))
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "sentiment_soak"
WORDS = ("launch", "update", "service", "support", "price", "delivery", "app", "team")
MOODS = ("I love the new {w}, great job", "the {w} is broken again, awful", "the {w} is at noon")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fresh_database() -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    await admin.close()


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [SCRIPT, *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


class Load:
    def __init__(self, base: str, deadline: float) -> None:
        self.base = base
        self.deadline = deadline
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.accepted = 0
        self.ws_messages: dict[str, int] = defaultdict(int)
        self.delivery_ms: list[float] = []

    async def ingest(self, rate: int) -> None:
        """Open loop: a batch every 100 ms whatever the answers take (at most 50 in flight)."""
        batch = max(1, rate // 10)
        in_flight = asyncio.Semaphore(50)
        tasks: set[asyncio.Task[None]] = set()

        async def send(client: httpx.AsyncClient, posts: list[dict[str, str]]) -> None:
            async with in_flight:
                await self.timed("POST /api/posts", client.post("/api/posts", json=posts))

        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            started = time.monotonic()
            sent = 0
            while time.monotonic() < self.deadline:
                now = datetime.now(UTC).isoformat()
                posts = [
                    {
                        "source": random.choice(("twitter", "reddit", "news")),
                        "content": random.choice(MOODS).format(w=random.choice(WORDS)),
                        "created_at": now,
                    }
                    for _ in range(batch)
                ]
                task = asyncio.create_task(send(client, posts))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += batch
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.gather(*tasks)

    async def read(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
            while time.monotonic() < self.deadline:
                if random.random() < 0.5:
                    await self.timed("GET /api/posts", client.get("/api/posts?limit=20"))
                else:
                    request = client.get("/api/metrics?window_minutes=5")
                    await self.timed("GET /api/metrics", request)
                await asyncio.sleep(random.uniform(0.2, 0.6))

    async def timed(self, name: str, request: Awaitable[httpx.Response]) -> None:
        started = time.perf_counter()
        try:
            response = await request
            ok = response.status_code < 400
            if name.startswith("POST") and ok:
                self.accepted += response.json()["accepted"]
        except httpx.HTTPError:
            ok = False
        self.latency[name].append((time.perf_counter() - started) * 1000)
        if not ok:
            self.errors[name] += 1

    async def watch(self, url: str) -> None:
        try:
            async with connect(url, compression=None, open_timeout=30) as ws:
                while time.monotonic() < self.deadline:
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 1.0)
                    except TimeoutError:
                        continue
                    message = orjson.loads(raw)
                    self.ws_messages[message["type"]] += 1
                    if message["type"] == "posts":  # what the dashboard asks for: ?batch=1
                        received = datetime.now(UTC)
                        for post in message["data"]:
                            created = datetime.fromisoformat(post["created_at"])
                            self.delivery_ms.append((received - created).total_seconds() * 1000)
        except Exception:  # noqa: BLE001 - a dropped client is counted, not fatal
            self.errors["ws"] += 1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=500, help="posts ingested per second")
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--ws-clients", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8077)
    args = parser.parse_args()

    await fresh_database()
    suffix = uuid.uuid4().hex[:8]
    env = os.environ | {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_STREAM_NAME": f"soak_{suffix}",
        "REDIS_CONSUMER_GROUP": f"soak_workers_{suffix}",
        "EVENTS_CHANNEL": f"soak_events_{suffix}",
        "API_PORT": str(args.port),
        "RATE_LIMIT_PER_MINUTE": "0",
        "LOG_LEVEL": "WARNING",
    }
    logs = Path("/tmp") / f"soak-{suffix}"
    logs.mkdir()
    init = [SCRIPT, "init-db"]
    await asyncio.to_thread(subprocess.run, init, env=env, check=True, capture_output=True)
    api = start(env, "serve", log=logs / "api.log")
    workers = [
        start(env, "worker", "--name", f"soak-{i}", log=logs / f"worker-{i}.log")
        for i in range(args.workers)
    ]
    base = f"http://127.0.0.1:{args.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=1) as probe:
            for _ in range(300):
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        server = psutil.Process(api.pid)
        started = time.monotonic()
        load = Load(base, started + args.minutes * 60)
        memory: list[tuple[float, float]] = []

        async def sample_memory() -> None:
            while time.monotonic() < load.deadline:
                memory.append((time.monotonic() - started, server.memory_info().rss / 2**20))
                await asyncio.sleep(30)

        ws_url = f"ws://127.0.0.1:{args.port}/ws?batch=1"
        await asyncio.gather(
            load.ingest(args.rate),
            *(load.read() for _ in range(args.readers)),
            *(load.watch(ws_url) for _ in range(args.ws_clients)),
            sample_memory(),
        )
        elapsed = time.monotonic() - started
        memory.append((elapsed, server.memory_info().rss / 2**20))
        await asyncio.sleep(5)  # let the workers finish what is queued
        db = await asyncpg.connect(env["DATABASE_URL"])
        stored = await db.fetchval("SELECT count(*) FROM sentiment_analysis")
        await db.close()
    finally:
        for process in (api, *workers):
            process.terminate()
        for process in (api, *workers):
            process.wait(30)

    print(f"soak: {elapsed / 60:.1f} min, {args.workers} workers, {os.cpu_count()} cores")
    print(f"ingested {load.accepted} posts ({load.accepted / elapsed:.0f}/s), stored {stored}")
    for name, values in sorted(load.latency.items()):
        print(
            f"{name:18s} n={len(values):6d} p50={statistics.median(values):7.1f} ms "
            f"p99={percentile(values, 0.99):7.1f} ms errors={load.errors[name]}"
        )
    print(f"websocket: {dict(load.ws_messages)} dropped={load.errors['ws']}")
    print(
        f"websocket post delivery (created→received): p50={percentile(load.delivery_ms, 0.5):.0f}"
        f" ms p99={percentile(load.delivery_ms, 0.99):.0f} ms"
    )
    print("API RSS MiB over time: " + ", ".join(f"{t:.0f}s={m:.0f}" for t, m in memory))


if __name__ == "__main__":
    asyncio.run(main())
