"""What an uncached `/api/metrics` answer costs the API process, with and without issue 31's
filters: `compute_metrics` on a bare pooled connection (as `ApiParts.reading` hands it),
no cache, the median of N calls per window, after a warm-up.

On a store `bench load` filled (PostgreSQL), `--mix` first gives its posts languages and
copies (80 % en, 8 % fr, 5 % es, 4 % de, 3 % und; every tenth post a copy of the one before;
`de` posts unanalysed, as no model reads them) and rebuilds the rollups, so the cells are
as many as a mixed feed makes. The same database then serves the code before the change
(run with `PYTHONPATH` on the older checkout's `src`: it reads the new table's cells and
ignores their language and copy columns) and after it: the figures compare like with like.

    DATABASE_URL=postgresql+asyncpg://…/sentiment_bench sentiment-platform bench load \\
        --posts 1000000 --days 30 --seed 1
    .venv/bin/python benchmarks/metrics_cost.py --database-url … --mix
    PYTHONPATH=../before/src .venv/bin/python benchmarks/metrics_cost.py --database-url …

`--capture FILE` writes the metrics statement each window runs (this checkout's code) to a
file; `--compare BEFORE AFTER` runs two captures' statements as the app does (prepared, plan
cached), alternately, `--rounds` times, on one connection: the cost of the one read before
and after under the same load, and the pages each touches (EXPLAIN (ANALYZE, BUFFERS)).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine
from sentiment_platform.services.reporting import aggregator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import cpu_description  # noqa: E402

WINDOWS = (
    ("60 min by minute", timedelta(minutes=60), aggregator.Bucket.MINUTE),
    ("2 days by hour", timedelta(days=2), aggregator.Bucket.HOUR),
    ("30 days by day", timedelta(days=30), aggregator.Bucket.DAY),
)
MIX = """
UPDATE social_media_posts SET
  language = CASE WHEN id % 100 < 80 THEN 'en' WHEN id % 100 < 88 THEN 'fr'
                  WHEN id % 100 < 93 THEN 'es' WHEN id % 100 < 97 THEN 'de' ELSE 'und' END,
  duplicate_of = CASE WHEN id % 10 = 0 THEN 'p' || (id - 1) END
"""
UNANALYSED_DE = """
UPDATE social_media_posts SET sentiment = NULL, emotion = NULL, confidence = NULL,
  emotion_confidence = NULL, model = NULL, analyzed_at = NULL, analysis = 'unsupported_language'
WHERE language = 'de'
"""


def mix(url: str) -> None:
    """Languages and copies on the loaded posts, then the rollups rebuilt (`rollups
    rebuild`): psql and the CLI, as an operator would, with no request timeouts."""
    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    for sql in (MIX, UNANALYSED_DE, "VACUUM ANALYZE social_media_posts"):
        subprocess.run(["psql", plain, "-qc", sql], check=True)
    cli = [sys.executable, "-c", "from sentiment_platform.cli import app; app()"]
    env = os.environ | {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    subprocess.run([*cli, "rollups", "rebuild"], env=env, check=True)
    for table in ("post_rollups", "model_rollups"):
        subprocess.run(["psql", plain, "-qc", f"VACUUM ANALYZE {table}"], check=True)
    print("mixed: languages and copies set, rollups rebuilt")


Captured = dict[str, tuple[str, tuple[object, ...]]]  # window: (SQL, its parameters)


async def capture(url: str, end: datetime) -> Captured:
    """The metrics statement (the one read of the post and model rollups) this checkout's
    code runs for each window, with its parameters (`--capture` writes them for `--compare`)."""
    import asyncpg

    engine = create_engine(Settings(database_url=url))
    seen: list[tuple[str, tuple[object, ...]]] = []
    fetch = asyncpg.connection.Connection.fetch

    async def spy(self: asyncpg.Connection, sql: str, *args: object, **kw: object) -> object:
        if "post_rollups" in sql and "model_rollups" in sql:
            seen.append((sql, args))
        return await fetch(self, sql, *args, **kw)

    asyncpg.connection.Connection.fetch = spy
    statements: Captured = {}
    async with engine.connect() as connection:
        for name, span, bucket in WINDOWS:
            await aggregator.compute_metrics(connection, end - span, end, bucket, None)
            statements[name] = seen[-1]
    asyncpg.connection.Connection.fetch = fetch
    await engine.dispose()
    return statements


async def compare(url: str, captured: list[Captured], rounds: int) -> None:
    """Two captures' statements run as the app runs them (prepared by asyncpg, its plan
    cached), alternated round by round on one connection so both meet the box's load
    alike: the round trip's median and best in ms, and, from one EXPLAIN (ANALYZE,
    BUFFERS), the pages each touched. (EXPLAIN's own times plan with the values known, which
    the app's cached plan does not: they are not what a request costs.)"""
    import asyncpg

    driver = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    print(
        "| window | before ms median / best | after ms median / best | after / before "
        "(median) | buffers before / after |\n|---|---|---|---|---|"
    )
    for name, _, _ in WINDOWS:
        times: list[list[float]] = [[], []]
        prepared = [await driver.prepare(side[name][0]) for side in captured]
        buffers = []
        for side in captured:
            sql, args = side[name]
            plan = await driver.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", *args)
            node = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
            buffers.append(node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0))
        for round_ in range(rounds + 10):
            for index in (0, 1):
                started = time.perf_counter()
                await prepared[index].fetch(*captured[index][name][1])
                if round_ >= 10:  # past the plan cache's first five custom plans
                    times[index].append((time.perf_counter() - started) * 1000)
        medians = [statistics.median(t) for t in times]
        print(
            f"| {name} | {medians[0]:.2f} / {min(times[0]):.2f} | {medians[1]:.2f} / "
            f"{min(times[1]):.2f} | {medians[1] / medians[0]:.2f} | {buffers[0]} / {buffers[1]} |"
        )
    await driver.close()


async def measure(url: str, calls: int, end: datetime) -> None:
    engine = create_engine(Settings(database_url=url))
    filtered = "unique" in inspect.signature(aggregator.compute_metrics).parameters
    variants: list[tuple[str, dict[str, object]]] = [("plain", {})]
    if filtered:
        variants += [("unique", {"unique": True}), ("language=fr", {"language": "fr"})]
    print("| window | variant | median ms | p90 ms |\n|---|---|---|---|")
    async with engine.connect() as connection:
        for name, span, bucket in WINDOWS:
            for variant, extra in variants:
                times = []
                for i in range(calls + 5):
                    started = time.perf_counter()
                    await aggregator.compute_metrics(
                        connection, end - span, end, bucket, None, **extra
                    )
                    if i >= 5:  # the first calls build and prepare the statements
                        times.append((time.perf_counter() - started) * 1000)
                times.sort()
                p90 = times[int(0.9 * (len(times) - 1))]
                print(f"| {name} | {variant} | {statistics.median(times):.2f} | {p90:.2f} |")
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"), required=False)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--mix", action="store_true", help="set languages and copies first")
    parser.add_argument("--capture", type=Path, help="write this code's statements to a file")
    parser.add_argument(
        "--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"), help="EXPLAIN two captures"
    )
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--end",
        type=datetime.fromisoformat,
        default=None,
        help="the windows' end (default now): the time the load ended, for full windows",
    )
    args = parser.parse_args()
    print(cpu_description())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"code: {Path(aggregator.__file__).resolve().parents[2]}")
    end = args.end or datetime.now(UTC)
    if args.mix:
        mix(args.database_url)
    if args.capture:
        statements = asyncio.run(capture(args.database_url, end))
        args.capture.write_bytes(pickle.dumps(statements))
        print(f"captured {len(statements)} statements into {args.capture}")
    elif args.compare:
        captured = [pickle.loads(path.read_bytes()) for path in args.compare]
        asyncio.run(compare(args.database_url, captured, args.rounds))
    else:
        asyncio.run(measure(args.database_url, args.calls, end))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
