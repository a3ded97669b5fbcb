"""Labels and the review queue (issue 30): label PUTs per second, and what one random draw
of 50 costs at a large table.

For each store: a fresh database (`sentiment-platform bench load --posts N --days D`; on
PostgreSQL a throw-away database, dropped afterwards unless `--keep`), then:

- one random draw of 50 alone, in this process (`services/trust/review.draw_random` in a
  transaction rolled back after each, so every draw meets the same table), `--draws` times:
  p50 and max ms; the same for `uncertain`;
- `sentiment-platform serve` (one process, the in-process bus, the embedded worker off,
  `RATE_LIMIT_PER_MINUTE=0`) and `GET /api/review?limit=50` alone over HTTP, p50;
- `wrk -t2 -c<connections> -d<duration>s` with a Lua script that PUTs a label on a random
  stored post (random sentiment, sometimes an emotion): req/s, p50, p99, non-2xx. Every
  post is drawn at random first (one `review_draws` row each, unless `--undrawn`), so each
  PUT is a random label and moves its label rollup cells (0011's triggers): the write at
  its dearest.
- the machine's ceiling first: the FastAPI hello-world (`hello.py`) in one process.

    .venv/bin/python benchmarks/labels.py --store postgres --posts 1000000 --days 30
    .venv/bin/python benchmarks/labels.py --store sqlite --posts 100000 --days 30
    .venv/bin/python benchmarks/labels.py --posts 10000000 --keep   # then --reuse, then drop

The server, the database and wrk share the machine; the figures say so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from api import _ms, cpu_line, psql_admin, started, stop_server  # benchmarks/api.py's helpers

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from sentiment_platform.cli import app; app()"]
PORT = 8791
DRAW_SLICE = 50_000  # posts drawn a statement when every post is drawn first
LUA = """
local token, count = "%s", %d
local sentiments = {"negative", "neutral", "positive"}
local emotions = {"joy", "sadness", "anger", "fear", "surprise", "neutral"}
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
local threads = 0
function setup(thread) threads = threads + 1; thread:set("id", threads) end
function init(args) math.randomseed(os.time() * 100 + id) end
function request()
  local body = '{"sentiment":"' .. sentiments[math.random(3)] .. '"'
  if math.random(2) == 1 then body = body .. ',"emotion":"' .. emotions[math.random(6)] .. '"' end
  local path = "/api/posts/bench-" .. token .. "-" .. math.random(0, count - 1) .. "/label"
  return wrk.format(nil, path, nil, body .. "}")
end
"""


def load(url: str, posts: int, days: float) -> None:
    env = os.environ | {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    command = [*CLI, "bench", "load", "--posts", str(posts), "--days", str(days), "--seed", "1"]
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    subprocess.run([*CLI, "init-db"], env=env, check=True, capture_output=True)


async def draws(url: str, count: int, drawn: bool) -> tuple[str, dict[str, float]]:
    """The bench posts' token, and each strategy's p50 / max ms for one draw of 50 (first,
    with `drawn`, every post drawn at random once)."""
    from sqlalchemy import bindparam, select, text

    from sentiment_platform.config import Settings
    from sentiment_platform.db import create_engine, create_session_factory
    from sentiment_platform.domain import utcnow
    from sentiment_platform.models.database import SocialMediaPost, UTCDateTime
    from sentiment_platform.services.trust.review import draw_random, draw_uncertain
    from sentiment_platform.store import LabelScope

    engine = create_engine(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    sessions = create_session_factory(engine)
    figures: dict[str, float] = {}
    if drawn:  # in slices of keys: each statement within the driver's command timeout
        async with sessions() as session:
            done = await session.scalar(text("SELECT count(*) FROM review_draws"))
            keys = text("SELECT min(id), max(id) FROM social_media_posts")
            low, high = (await session.execute(keys)).one() if not done else (0, -1)
        for first in range(low, high + 1, DRAW_SLICE):
            async with sessions() as session, session.begin():
                await session.execute(
                    text(
                        "INSERT INTO review_draws (post_ref, strategy, drawn_at) "
                        "SELECT id, 'random', :at FROM social_media_posts "
                        "WHERE id >= :first AND id < :next"
                    ).bindparams(bindparam("at", type_=UTCDateTime())),
                    {"at": utcnow(), "first": first, "next": first + DRAW_SLICE},
                )
        if not done:  # fresh statistics, as `bench load` leaves for the posts
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("review_draws", "label_rollups"):
                    await autocommit.execute(text(f"ANALYZE {table}"))
    async with sessions() as session:
        post_id = await session.scalar(select(SocialMediaPost.post_id).limit(1))
        assert post_id is not None and post_id.startswith("bench-")
        token = post_id.split("-")[1]
        for name, draw in (("random", draw_random), ("uncertain", draw_uncertain)):
            times = []
            for _ in range(count):
                begun = time.perf_counter()
                items = await draw(session, LabelScope(), 50)
                times.append((time.perf_counter() - begun) * 1000)
                await session.rollback()
                assert len(items) == 50, len(items)
            figures[f"{name} p50 ms"] = round(statistics.median(times), 2)
            figures[f"{name} max ms"] = round(max(times), 2)
    await engine.dispose()
    return token, figures


def serve(url: str) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "DATABASE_URL": url,
        "RATE_LIMIT_PER_MINUTE": "0",
        "EMBEDDED_WORKER": "false",
        "LOG_LEVEL": "WARNING",
        "API_PORT": str(PORT),
    }
    env.pop("REDIS_HOST", None)
    return started(subprocess.Popen([*CLI, "serve"], env=env, cwd=REPO), "/api/health")


def alone_p50(path: str, n: int = 30) -> float:
    import urllib.request

    times = []
    for _ in range(n):
        begun = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=30) as answer:
            answer.read()
        times.append((time.perf_counter() - begun) * 1000)
    return round(statistics.median(times), 2)


def wrk(path: str, duration: int, connections: int, script: Path | None) -> dict[str, float]:
    import re

    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    command += ["-s", str(script)] if script else []
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{PORT}{path}"], check=True, capture_output=True, text=True
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "non_2xx": float(bad.group(1)) if bad else 0.0,
    }


def ceiling(duration: int, connections: int) -> dict[str, float]:
    hello = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "hello:app", "--port", str(PORT), "--log-level"]
        + ["warning", "--app-dir", str(REPO / "benchmarks")]
    )
    server = started(hello, "/hello")
    try:
        return wrk("/hello", duration, connections, None)
    finally:
        stop_server(server)


def run(store: str, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    if store == "postgres":
        base = os.environ.get(
            "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/postgres"
        )
        url = f"{base.rsplit('/', 1)[0]}/sentiment_bench_labels_{args.posts}"
        name = url.rsplit("/", 1)[1]
        if not args.reuse:
            psql_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            psql_admin(base, f'CREATE DATABASE "{name}"')
    else:
        url = f"sqlite+aiosqlite:///{workdir / 'labels.db'}"
    try:
        begun = time.perf_counter()
        result: dict[str, object] = {"store": store, "posts": args.posts}
        if not args.reuse:
            load(url, args.posts, args.days)
            result["load s"] = round(time.perf_counter() - begun, 1)
        token, figures = asyncio.run(draws(url, args.draws, not args.undrawn))
        result |= figures
        script = workdir / "put_label.lua"
        script.write_text(LUA % (token, args.posts))
        server = serve(url)
        try:
            result["GET /api/review?limit=50 alone p50 ms"] = alone_p50("/api/review?limit=50")
            result["PUT label"] = wrk("/", args.duration, args.connections, script)
        finally:
            stop_server(server)
        return result
    finally:
        if store == "postgres" and not (args.keep or args.reuse):
            psql_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--draws", type=int, default=30)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument(
        "--undrawn", action="store_true", help="no random draw first: labels, not random ones"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="the PostgreSQL database a --keep run left (kept)"
    )
    args = parser.parse_args()
    print(cpu_line())
    print(
        json.dumps({"ceiling (hello-world, 1 process)": ceiling(args.duration, args.connections)})
    )
    with tempfile.TemporaryDirectory() as workdir:
        print(json.dumps(run(args.store, args, Path(workdir))), flush=True)
    print("server (1 API process), the database and wrk share this machine")
    print(cpu_line())


if __name__ == "__main__":
    main()
