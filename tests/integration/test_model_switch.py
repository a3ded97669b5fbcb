"""Bring a model, end to end (issue 32), on SQLite and PostgreSQL: a tiny random classifier
the suite builds itself is imported by `model import`'s own code, activated, and running
workers switch to it within 10 s with no restart, a batch never split between two models;
then back; then `rescore` relabels the history with it. A model whose `model.onnx` is
corrupt is never swapped in: the previous model keeps serving every post, and /api/health
says the model is down and why. Real processes
and Redis mode: tests/integration/test_model_processes.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.cli.rescore import _close, open_model
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis.rescore import rescore as rescore_history
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer
from tests.support import model_switch
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
    models_of,
    register_tiny_models,
)
from tests.support.pipeline import running, wait_until

backing = model_switch.backing  # the fixture: SQLite, then PostgreSQL

pytestmark = pytest.mark.asyncio

FAST = WorkerConfig(batch_size=40, block_ms=100, claim_idle_ms=60_000, retry_base_s=0.05)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_tiny_models(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("hf"))


@pytest_asyncio.fixture
async def workers_store(
    backing: tuple[str, Sessions | None], models_dir: Path
) -> AsyncIterator[tuple[Settings, Sessions]]:
    """Settings serving the registry (`ANALYZER_BACKENDS=embedded`, MODELS_DIR above) and a
    session factory whose commits other sessions see (workers and the test both write)."""
    url, sessions = backing
    settings = Settings(
        database_url=url,
        analyzer_backends=["embedded"],
        models_dir=str(models_dir),
        embedded_threads=1,
    )
    engine = None
    if sessions is None:
        engine = create_engine(settings)
        await upgrade_schema(engine)
        sessions = create_session_factory(engine)
    await register_tiny_models(sessions, models_dir, clear=engine is None)
    yield settings, sessions
    if engine is not None:
        await engine.dispose()


async def test_running_workers_switch_to_an_activated_model_and_back_without_restart(
    workers_store: tuple[Settings, Sessions],
) -> None:
    settings, sessions = workers_store
    analyzers = await asyncio.gather(
        *(asyncio.to_thread(SentimentAnalyzer.from_settings, settings) for _ in range(2))
    )
    bus = MemoryBus()
    workers = [
        Worker(bus, MemoryEvents(), sessions, analyzer, f"w{i}", FAST)
        for i, analyzer in enumerate(analyzers)
    ]
    try:
        async with running(workers), feeding(bus) as sent:
            await first_post_by(sessions, EMBEDDED, 0)
            mark = sent[0]
            started = time.monotonic()
            await activate(sessions, TINY)
            await first_post_by(sessions, SWITCHED, mark)

            async def every_worker_switched() -> bool:
                return all(a.backends[0].name == SWITCHED for a in analyzers)

            await wait_until(every_worker_switched, SWITCH_S, "both workers on the new model")
            assert time.monotonic() - started < SWITCH_S
            mark = sent[0]
            await activate(sessions, "embedded", "sentiment")
            await first_post_by(sessions, EMBEDDED, mark)
            switched_back = sent[0]

            async def all_back() -> bool:
                rows = await models_of(sessions, switched_back + 40)
                return len(rows) > 20 and {m for _, m, _ in rows} == {EMBEDDED}

            await wait_until(all_back, SWITCH_S, "only the embedded model after switching back")
        total = sent[0]

        async def all_stored() -> bool:
            return len(await models_of(sessions)) == total

        async with running(workers):
            await wait_until(all_stored, 20, "every post fed stored")
    finally:
        for analyzer in analyzers:
            await asyncio.to_thread(analyzer.close)
    rows = await models_of(sessions)
    assert [n for n, _, _ in rows] == list(range(1, total + 1)), "no post lost"
    assert {m for _, m, _ in rows} == {EMBEDDED, SWITCHED}
    batches: dict[str, set[str]] = {}
    for _, model, analyzed_at in rows:
        batches.setdefault(analyzed_at, set()).add(model)
    assert all(len(models) == 1 for models in batches.values()), "a batch split between models"

    # History rescored with the activated model (`rescore`'s own model loading): every stored
    # post ends up labelled by it, whichever model analysed it live.
    await activate(sessions, TINY)
    labeller, name = await open_model(None, None, settings, sessions)
    try:
        done = await rescore_history(sessions, labeller, name)
    finally:
        await asyncio.to_thread(_close, labeller)
    assert name == SWITCHED and done.posts > 0
    assert {m for _, m, _ in await models_of(sessions)} == {SWITCHED}


async def test_a_corrupt_model_is_not_swapped_in_and_health_says_why(
    workers_store: tuple[Settings, Sessions], caplog: pytest.LogCaptureFixture
) -> None:
    settings, sessions = workers_store
    settings = settings.model_copy(update={"embedded_worker": True, "worker_block_ms": 100})
    async with app_client(settings) as (_, client):

        async def post(first: int, count: int) -> None:
            body = [
                {"post_id": f"p-{n:06d}", "source": "t", "content": f"what a day {n}"}
                for n in range(first, first + count)
            ]
            assert (await client.post("/api/posts", json=body)).status_code == 202

        async def analysed(count: int) -> bool:
            return len(await models_of(sessions)) == count

        await post(1, 20)
        await wait_until(lambda: analysed(20), 20, "the first posts analysed")
        await activate(sessions, BROKEN)

        async def reported() -> bool:
            health = (await client.get("/api/health")).json()
            return str(health["model"]).startswith("down")

        await wait_until(reported, SWITCH_S, "/api/health to report the corrupt model")
        answer = await client.get("/api/health")
        health = answer.json()
        assert answer.status_code == 200 and health["status"] == "degraded"
        assert f"model '{BROKEN}' (sentiment) failed to load" in health["model"]
        assert "model.onnx" in health["model"]
        assert health["model"].endswith(f"still serving {EMBEDDED}")
        assert str(settings.models_path) not in health["model"]  # no paths to the world
        await post(21, 30)
        await wait_until(lambda: analysed(50), 20, "the posts sent after the activation")
        assert (await client.get("/readyz")).status_code == 200, "the old model still answers"
        assert {m for _, m, _ in await models_of(sessions)} == {EMBEDDED}
        failures = [r for r in caplog.records if getattr(r, "event", "") == "registry.load_failed"]
        assert len(failures) == 1, "the failure is logged once, not at every poll"
        await activate(sessions, "embedded")

        async def recovered() -> bool:
            return (await client.get("/api/health")).json()["model"] == f"ok: {EMBEDDED}"

        await wait_until(recovered, SWITCH_S, "/api/health ok once the embedded one is active")
