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
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
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


async def measure(url: str, calls: int) -> None:
    engine = create_engine(Settings(database_url=url))
    filtered = "unique" in inspect.signature(aggregator.compute_metrics).parameters
    variants: list[tuple[str, dict[str, object]]] = [("plain", {})]
    if filtered:
        variants += [("unique", {"unique": True}), ("language=fr", {"language": "fr"})]
    print("| window | variant | median ms | p90 ms |\n|---|---|---|---|")
    async with engine.connect() as connection:
        end = datetime.now(UTC)
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
    args = parser.parse_args()
    print(cpu_description())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"code: {Path(aggregator.__file__).resolve().parents[2]}")
    if args.mix:
        mix(args.database_url)
    asyncio.run(measure(args.database_url, args.calls))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
