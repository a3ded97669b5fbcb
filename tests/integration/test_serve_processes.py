"""`serve --workers N` (Redis mode): every API process logs as `serve` does in one."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.databases import TEST_DATABASE_URL
from tests.support.pipeline import wait_until
from tests.support.servers import serve_process

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres, pytest.mark.redis]


async def test_each_api_process_logs_json_with_its_fields(postgres, tmp_path: Path) -> None:
    await postgres.get()  # the migrated test database
    suffix = uuid.uuid4().hex[:10]
    env = {
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_STREAM_NAME": f"procs_{suffix}",
        "REDIS_CONSUMER_GROUP": f"procs_{suffix}",
        "EVENTS_CHANNEL": f"procs_{suffix}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }

    def started() -> list[dict[str, object]]:
        """Lines each process's app logs at start-up, as JSON with their `event` field (a
        spawned process that had not set up logging printed bare WARNING messages only)."""
        lines = (tmp_path / "serve.log").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.startswith("{")]
        return [r for r in records if r.get("event") == "security.open_locally"]

    async def both_started() -> bool:
        return len(started()) >= 2

    with serve_process(env, tmp_path, "--workers", "2", ready="/readyz"):
        # The second process may start after the first one answers.
        await wait_until(both_started, 30, "a start-up line from each process")
    assert len(started()) == 2, (tmp_path / "serve.log").read_text()
