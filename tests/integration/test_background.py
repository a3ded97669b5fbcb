"""A background task that dies is logged and restarted, or reported down by the probes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from sentiment_platform.api.background import Background
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.main import create_app


async def test_a_supervised_loop_that_dies_is_logged_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def flaky(stop: asyncio.Event) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("database driver bug")
        await stop.wait()

    background = Background()
    async with AsyncExitStack() as stack:
        background.supervise(stack, flaky, "flaky")
        for _ in range(100):
            if len(runs) == 2:
                break
            await asyncio.sleep(0.05)
        assert background.status() == {"flaky": "ok"}
    assert len(runs) == 2 and background.restarts["flaky"] == 1
    died = [r for r in caplog.records if getattr(r, "event", "") == "background.died"]
    assert len(died) == 1 and died[0].levelno == logging.ERROR
    assert "database driver bug" in died[0].error  # type: ignore[attr-defined]


async def test_a_loop_that_is_gone_makes_health_and_readyz_down(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", embedded_worker=False
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            health = await http.get("/api/health")
            assert health.status_code == 200, health.text
            loops = health.json()["tasks"]
            assert {loops[name] for name in ("alert-monitor", "alert-webhooks", "ws-consume")} == {
                "ok"
            }
            [monitor] = [t for t in asyncio.all_tasks() if t.get_name() == "alert-monitor"]
            monitor.cancel()
            await asyncio.sleep(0.05)
            health = await http.get("/api/health")
            assert health.status_code == 503
            assert health.json()["status"] == "down"
            assert health.json()["tasks"]["alert-monitor"] == "down"
            assert (await http.get("/readyz")).status_code == 503
