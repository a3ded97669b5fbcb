"""Bring a model, end to end (issue 32), on SQLite and PostgreSQL: a tiny random classifier
the suite builds itself is imported by `model import`'s own code, activated, and running
workers switch to it within 10 s with no restart, a batch never split between two models;
then back. A model whose `model.onnx` is corrupt is never swapped in: the previous model
keeps serving every post, and /api/health says the model is down and why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.bus.redis import RedisStreamBus, redis_client
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import Post, Task
from sentiment_platform.models.database import AnalysisModel, ModelActivation
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis import registry
from sentiment_platform.services.analysis.registry import embedded_identity
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer
from tests.support.app_client import app_client
from tests.support.databases import scratch_database_url
from tests.support.hf_tiny import SENTIMENT_LABELS, build_tiny_classifier
from tests.support.pipeline import wait_until

pytestmark = pytest.mark.asyncio

FAST = WorkerConfig(batch_size=40, block_ms=100, claim_idle_ms=60_000, retry_base_s=0.05)
SWITCH_S = 10.0  # the promise: every worker serves the activated model within 10 s
Sessions = async_sessionmaker[AsyncSession]
EMBEDDED = embedded_identity().name if embedded_identity() else "embedded"  # type: ignore[union-attr]
TINY = "tiny-sent"
BROKEN = "tiny-broken"
SWITCHED = f"{TINY}+{EMBEDDED}"  # the imported sentiment model beside the embedded emotion


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODELS_DIR holding `tiny-sent`, imported from a random 1-layer RoBERTa classifier by
    `model import`'s code, and `tiny-broken`, a copy whose model.onnx is garbage."""
    from sentiment_platform.training.hf_import import ImportRequest, import_model

    root = tmp_path_factory.mktemp("models")
    source = build_tiny_classifier(
        tmp_path_factory.mktemp("hf") / "tiny", SENTIMENT_LABELS, layers=1, seed=0
    )
    request = ImportRequest(source=str(source), task=Task.SENTIMENT, models_dir=root, name=TINY)
    import_model(request)
    shutil.copytree(root / TINY, root / BROKEN)
    manifest = json.loads((root / BROKEN / "model.json").read_text())
    (root / BROKEN / "model.json").write_text(json.dumps({**manifest, "name": BROKEN}))
    (root / BROKEN / "model.onnx").write_bytes(b"\x00not an onnx graph" * 64)
    return root


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Sessions | None]:
    """The store's URL, and on PostgreSQL the pipeline tests' emptied database (a sync
    fixture: it may ask for that async one by name)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'switch.db'}", None
    return scratch_database_url("pipeline"), request.getfixturevalue("pg_sessions")


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
    else:
        async with sessions() as session, session.begin():
            await session.execute(delete(ModelActivation))
            await session.execute(delete(AnalysisModel))
    for name in (TINY, BROKEN):
        manifest = json.loads((models_dir / name / "model.json").read_text())
        await committed(sessions, lambda s, m=manifest: registry.register(s, m))
    yield settings, sessions
    if engine is not None:
        await engine.dispose()


async def committed(sessions: Sessions, work: Any) -> Any:
    async with sessions() as session, session.begin():
        return await work(session)


async def activate(sessions: Sessions, name: str, task: str | None = None) -> None:
    await committed(sessions, lambda s: registry.activate(s, name, task))


async def models_of(sessions: Sessions, after: int = 0) -> list[tuple[int, str, str]]:
    """(post number, model, analyzed_at) of the analysed posts numbered above `after`."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT post_id, model, analyzed_at FROM social_media_posts "
                "WHERE model IS NOT NULL ORDER BY post_id"
            )
        )
    found = [(int(post_id.split("-")[1]), model, str(at)) for post_id, model, at in rows]
    return [row for row in found if row[0] > after]


@contextlib.asynccontextmanager
async def feeding(bus: MemoryBus | RedisStreamBus) -> AsyncIterator[list[int]]:
    """Posts onto the bus, five every 50 ms, numbered in order; yields how many so far."""
    sent = [0]

    async def feed() -> None:
        while True:
            posts = [
                Post(post_id=f"p-{sent[0] + i:06d}", source="t", content=f"great day {i}")
                for i in range(1, 6)
            ]
            await bus.publish(posts)
            sent[0] += len(posts)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(feed())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def first_post_by(
    sessions: Sessions, model: str, after: int, timeout_s: float = SWITCH_S
) -> int:
    """Wait (10 s unless told) for a post numbered above `after` analysed by `model`."""
    found: list[int] = []

    async def seen() -> bool:
        found.extend(n for n, m, _ in await models_of(sessions, after) if m == model)
        return bool(found)

    await wait_until(seen, timeout_s, f"a post analysed by {model!r}")
    return min(found)


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
        assert {m for _, m, _ in await models_of(sessions)} == {EMBEDDED}
        failures = [r for r in caplog.records if getattr(r, "event", "") == "registry.load_failed"]
        assert len(failures) == 1, "the failure is logged once, not at every poll"
        await activate(sessions, "embedded")

        async def recovered() -> bool:
            return (await client.get("/api/health")).json()["model"] == f"ok: {EMBEDDED}"

        await wait_until(recovered, SWITCH_S, "/api/health ok once the embedded one is active")


REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("sentiment-platform"))


def start(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`sentiment-platform ARGS` as a process of its own, its output in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen([CLI, *args], env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_worker_process_switches_when_another_process_activates(
    pg_sessions: Sessions, redis_settings: Settings, models_dir: Path, tmp_path: Path
) -> None:
    """Real processes: a `worker` on Redis and PostgreSQL, and `model activate` run as a
    command; nothing is sent to the worker, and it serves the new model within 10 s."""
    async with pg_sessions() as session, session.begin():
        await session.execute(delete(ModelActivation))
        await session.execute(delete(AnalysisModel))
    manifest = json.loads((models_dir / TINY / "model.json").read_text())
    await committed(pg_sessions, lambda s: registry.register(s, manifest))
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
