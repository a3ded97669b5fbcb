"""Bring a model, with real processes and Redis (issue 32): a `worker` process switches when
`model activate`, another process, activates; in Redis mode the API runs no model, and still
reports one that the workers cannot load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from tests.support.app_client import app_client
from tests.support.model_switch import (
    BROKEN,
    EMBEDDED,
    SWITCH_S,
    SWITCHED,
    TINY,
    Sessions,
    activate,
    feeding,
    first_post_by,
    import_tiny_models,
    register_tiny_models,
)
from tests.support.pipeline import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_tiny_models(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("hf"))


REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("sentiment-platform"))


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`sentiment-platform ARGS` as a process of its own, its output in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen([CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


async def test_a_worker_process_switches_when_another_process_activates(
    pg_sessions: Sessions, redis_settings: Settings, models_dir: Path, tmp_path: Path
) -> None:
    """Real processes: a `worker` on Redis and PostgreSQL, and `model activate` run as a
    command; nothing is sent to the worker, and it serves the new model within 10 s."""
    await register_tiny_models(pg_sessions, models_dir, clear=True)
    settings = redis_settings.model_copy(
        update={
            "analyzer_backends": ["embedded"],
            "models_dir": str(models_dir),
            "embedded_threads": 1,
            "worker_batch_size": 20,
            "worker_block_ms": 100,
            "log_level": "WARNING",
        }
    )
    env = os.environ | settings.environment() | {"PYTHONPATH": f"{REPO / 'src'}:{REPO}"}
    bus = RedisStreamBus.from_settings(settings, redis_client(settings))
    log_path = tmp_path / "worker.log"
    worker = start(["worker", "--name", "proc"], env, log_path)
    try:
        async with feeding(bus) as sent:
            await first_post_by(pg_sessions, EMBEDDED, 0, timeout_s=60)  # the process starts
            mark = sent[0]
            started = time.monotonic()
            activated = await asyncio.to_thread(
                subprocess.run,
                [CLI, "model", "activate", TINY],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert activated.returncode == 0, activated.stderr
            await first_post_by(pg_sessions, SWITCHED, mark)
            assert time.monotonic() - started < SWITCH_S + 5  # the command's own start-up
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 20)
    assert worker.returncode == 0, log_path.read_text()[-2000:]


async def test_in_redis_mode_the_api_reports_a_model_the_workers_cannot_load(
    pg_sessions: Sessions, redis_settings: Settings, models_dir: Path
) -> None:
    """No model runs in an API process of Redis mode: it checks the activated one loads."""
    await register_tiny_models(pg_sessions, models_dir, clear=True)
    settings = redis_settings.model_copy(update={"models_dir": str(models_dir)})
    async with app_client(settings) as (_, client):

        async def model_says(start: str) -> bool:
            return str((await client.get("/api/health")).json()["model"]).startswith(start)

        assert await model_says("runs in the workers")
        await activate(pg_sessions, TINY)
        await asyncio.sleep(2.5)  # a poll later: a model that loads is no news
        assert await model_says("runs in the workers")
        await activate(pg_sessions, BROKEN)
        await wait_until(lambda: model_says("down"), SWITCH_S, "the API to report the model")
        health = (await client.get("/api/health")).json()
        assert health["status"] == "degraded"
        assert f"model '{BROKEN}' (sentiment) failed to load" in health["model"]
        assert (await client.get("/readyz")).status_code == 200, "the workers still answer"
        await activate(pg_sessions, "embedded")
        await wait_until(lambda: model_says("runs in the workers"), SWITCH_S, "the report to clear")
