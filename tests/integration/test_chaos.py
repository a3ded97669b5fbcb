"""The short chaos run: 30 s of load through the API into two workers on a private Redis and
a private PostgreSQL, while each is killed and restarted once and a worker is `kill -9`ed:
no answer is a 500, and every post answered 202 is stored exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import private_postgres, private_redis

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    bool(private_postgres.available() or private_redis.available()),
    reason=str(private_postgres.available() or private_redis.available()),
)


def test_thirty_seconds_of_faults_lose_nothing_and_answer_no_500() -> None:
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "chaos.py"),
        "--duration", "30",
        "--rate", "100",
        "--redis-restarts", "1",
        "--postgres-restarts", "1",
        "--kill-every", "15",
        "--outage-s", "4",
        "--drain-s", "90",
        "--analyzer", "tests.support.pipeline:KeywordAnalyzer",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert run.stdout.strip(), run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["answered_202"] > 1_000, result
    assert result["lost"] == 0, result
    assert result["duplicates"] == 0, result
    assert result["stored"] == result["answered_202"], result
    statuses = set(result["responses"])
    assert not {status for status in statuses if status.startswith("5")} - {"503"}, result
    assert "503" in statuses, "Redis was down for 4 s: some writes must have been refused"
    kinds = [fault["fault"] for fault in result["faults"]]
    assert "redis" in kinds and "postgres" in kinds and len(kinds) == 3, result
    assert all(fault["to_first_202_s"] is not None for fault in result["faults"]), result
    assert all(fault["to_first_stored_s"] is not None for fault in result["faults"]), result
    assert run.returncode == 0, run.stdout
