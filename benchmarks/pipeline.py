"""End-to-end pipeline throughput and latency: Redis stream -> worker processes -> PostgreSQL.

Publishes `--posts` posts onto a fresh stream, with 1 and 2 real `sentiment-platform worker`
processes consuming it, and measures

- throughput: posts/s from the first publish to the last post stored;
- latency: publish -> stored per post (p50/p99), from each post's `created_at` (set at
  publish) and its `ingested_at` (set in the storing transaction);
- the workers' CPU time per post, which holds whatever else shares the machine.

With the default burst every post is published at once, so latency includes the queueing
behind the backlog; `--rate` paces the publisher to measure latency below saturation.

    .venv/bin/python benchmarks/pipeline.py --analyzer trivial
    .venv/bin/python benchmarks/pipeline.py --analyzer embedded --posts 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from sentiment_platform import store
from sentiment_platform.bus import Bus
from sentiment_platform.bus.redis import redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.domain import Emotion, Post, Prediction, Sentiment, utcnow
from sentiment_platform.pipeline.demo import CITIES, SUBJECTS, DemoGenerator
from sentiment_platform.rule_spec import RuleSpec
from sentiment_platform.runtime import Runtime, open_runtime

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from model import cpu_description  # noqa: E402  (benchmarks/model.py, beside this script)

CLI = Path(sys.executable).with_name("sentiment-platform")
BENCH_DB = "sentiment_pipeline_bench"
PUBLISH_CHUNK = 1_000
TRIVIAL = "benchmarks.pipeline:TrivialAnalyzer"
LATENCY_SQL = """
SELECT extract(epoch FROM max(ingested_at)) AS last_stored,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ingested_at - created_at) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ingested_at - created_at) AS p99
FROM social_media_posts
"""


class TrivialAnalyzer:
    """Labels everything neutral at once: what is left to measure is the plumbing."""

    model = "trivial-benchmark"

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        prediction = Prediction(Sentiment.NEUTRAL, 1.0, Emotion.NEUTRAL, 1.0, self.model)
        return [prediction] * len(texts)


async def prepare_database(admin_dsn: str, url: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname=$1", BENCH_DB):
            await admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await admin.close()
    engine = create_engine(Settings(database_url=url))
    await upgrade_schema(engine)
    await engine.dispose()


def start_workers(
    settings: Settings, count: int, analyzer: str, batch_size: int, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    env = (
        os.environ
        | settings.environment()
        | {
            "WORKER_BATCH_SIZE": str(batch_size),
            "LOG_LEVEL": "WARNING",
            # this checkout's code, not whatever the venv installed, and benchmarks/
            "PYTHONPATH": os.pathsep.join((str(REPO / "src"), str(REPO))),
        }
    )
    command = [str(CLI), "worker"]
    if analyzer == "trivial":
        command += ["--analyzer", TRIVIAL]
    else:
        env["ANALYZER_BACKENDS"] = "embedded"
    workers = []
    for i in range(count):
        log = (log_dir / f"worker-{i}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [*command, "--name", f"bench-{i}"], env=env, cwd=REPO, stdout=log, stderr=log
            )
        )
    return workers


async def wait_for_consumers(
    settings: Settings, processes: list[subprocess.Popen[bytes]], log_dir: Path, timeout_s: float
) -> None:
    """Workers register in the group on their first read: by then their model is loaded."""
    count = len(processes)
    client = redis_client(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            for i, process in enumerate(processes):
                if process.poll() is not None:
                    log = (log_dir / f"worker-{i}.log").read_text(errors="replace")
                    raise RuntimeError(f"worker {i} exited at startup:\n{log[-2_000:]}")
            consumers = await client.xinfo_consumers(
                settings.redis_stream_name, settings.redis_consumer_group
            )
            if len(consumers) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(consumers)} of {count} workers started")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of processes (Linux /proc): the cost per post whatever else runs."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


async def publish(bus: Bus, posts: list[Post], rate: float | None) -> float:
    """Publish in chunks (20 a second when paced), each stamped with its publish time;
    returns the first publish time."""
    first = time.time()
    started = time.monotonic()
    size = PUBLISH_CHUNK if rate is None else max(1, min(PUBLISH_CHUNK, int(rate / 20)))
    for start in range(0, len(posts), size):
        now = utcnow()
        chunk = [p.model_copy(update={"created_at": now}) for p in posts[start : start + size]]
        await bus.publish(chunk)
        if rate is not None:
            delay = started + (start + len(chunk)) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return first


async def wait_stored(connection: asyncpg.Connection, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while await connection.fetchval("SELECT count(*) FROM sentiment_analysis") < expected:
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the workers to store every post")
        await asyncio.sleep(0.1)


def bench_rules(count: int) -> list[RuleSpec]:
    """`count` keyword rules over the demo's brands, cities and words, so about a third of
    posts match some rule and the rest are matched against all of them for nothing."""
    brands = [name.split()[-1] for names in SUBJECTS.values() for name in names]
    words = [*brands, *CITIES, "delay", "refund", "outage", "battery", "checkout"]
    return [
        RuleSpec(
            name=f"bench rule {i}",
            keywords=[words[i % len(words)], f"{words[(7 * i) % len(words)]} issue", f"zz{i}"],
            threshold=0.9,
        )
        for i in range(count)
    ]


async def install_rules(runtime: Runtime, count: int) -> None:
    async with runtime.session_factory() as session, session.begin():
        for spec in bench_rules(count):
            await store.create_rule(session, spec, utcnow())


async def run_once(args: argparse.Namespace, workers: int, posts: list[Post]) -> dict[str, object]:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=args.database_url,
        redis_host=args.redis_host,
        redis_port=args.redis_port,
        redis_stream_name=f"bench_posts_{suffix}",
        redis_consumer_group=f"bench_workers_{suffix}",
        events_channel=f"bench_events_{suffix}",
    )
    dsn = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    await connection.execute(
        "TRUNCATE social_media_posts, sentiment_analysis, rule_counts, alert_rules, "
        "post_rollups, model_rollups CASCADE"
    )
    async with open_runtime(settings) as runtime:
        await install_rules(runtime, args.rules)
        bus = runtime.bus
        await bus.ensure_group()
        log_dir = Path(args.log_dir)
        await asyncio.to_thread(log_dir.mkdir, parents=True, exist_ok=True)
        processes = start_workers(settings, workers, args.analyzer, args.batch_size, log_dir)
        try:
            await wait_for_consumers(settings, processes, log_dir, args.startup_timeout)
            pids = [process.pid for process in processes]
            cpu_before = cpu_seconds(pids)
            first_publish = await publish(bus, posts, args.rate)
            published_s = time.time() - first_publish
            await wait_stored(connection, len(posts), args.timeout)
            worker_cpu_s = cpu_seconds(pids) - cpu_before
            row = await connection.fetchrow(LATENCY_SQL)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(30)
            assert runtime.redis is not None
            await runtime.redis.delete(settings.redis_stream_name)
            # and the run's duplicate index (beside its stream): a day of it otherwise
            async for key in runtime.redis.scan_iter(f"{settings.redis_stream_name}:dedup:*"):
                await runtime.redis.delete(key)
            await connection.close()
    elapsed = float(row["last_stored"]) - first_publish
    return {
        "analyzer": args.analyzer,
        "rules": args.rules,
        "workers": workers,
        "posts": len(posts),
        "batch_size": args.batch_size,
        "rate": args.rate,
        "publish_s": round(published_s, 2),
        "elapsed_s": round(elapsed, 2),
        "posts_per_s": round(len(posts) / elapsed),
        "latency_p50_ms": round(row["p50"].total_seconds() * 1000, 1),
        "latency_p99_ms": round(row["p99"].total_seconds() * 1000, 1),
        "worker_cpu_s": round(worker_cpu_s, 2),
        "posts_per_worker_cpu_s": round(len(posts) / worker_cpu_s),
    }


async def main(args: argparse.Namespace) -> None:
    admin = args.database_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = admin.rsplit("/", 1)[0] + "/postgres"
    await prepare_database(admin, args.database_url)
    posts = DemoGenerator(negative_ratio=0.3, seed=7).posts(args.posts)
    print(f"{cpu_description()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    for workers in args.workers:
        result = await run_once(args, workers, posts)
        results.append(result)
        print(
            f"{result['analyzer']:>8} rules={args.rules} workers={workers} posts={result['posts']} "
            f"batch={result['batch_size']}: {result['posts_per_s']:>7} posts/s end to end, "
            f"latency p50 {result['latency_p50_ms']} ms p99 {result['latency_p99_ms']} ms "
            f"(published in {result['publish_s']} s, all stored after {result['elapsed_s']} s); "
            f"workers used {result['worker_cpu_s']} CPU-s = "
            f"{result['posts_per_worker_cpu_s']} posts per worker CPU-second",
            flush=True,
        )
    print(json.dumps(results))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyzer", choices=("trivial", "embedded"), default="trivial")
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--rules", type=int, default=0, help="keyword alert rules to match")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=500, help="XREADGROUP COUNT")
    parser.add_argument("--rate", type=float, default=None, help="posts/s (default: burst)")
    parser.add_argument(
        "--database-url", default=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{BENCH_DB}"
    )
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to store all")
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--log-dir", default="/tmp/bench-pipeline-logs")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
