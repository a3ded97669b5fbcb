"""Helpers of the model registry's end-to-end tests (issue 32): tiny models imported by
`model import`'s own code (one of them then corrupted), the registry written as a command
would, posts fed and the model each was analysed by."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus.memory import MemoryBus
from sentiment_platform.bus.redis import RedisStreamBus
from sentiment_platform.domain import Post, Task
from sentiment_platform.models.database import AnalysisModel, ModelActivation
from sentiment_platform.services.analysis import registry
from sentiment_platform.services.analysis.registry import embedded_identity
from tests.support.databases import scratch_database_url
from tests.support.hf_tiny import SENTIMENT_LABELS, build_tiny_classifier
from tests.support.pipeline import wait_until

SWITCH_S = 10.0  # the promise: every worker serves the activated model within 10 s
Sessions = async_sessionmaker[AsyncSession]
EMBEDDED = embedded_identity().name if embedded_identity() else "embedded"  # type: ignore[union-attr]
TINY = "tiny-sent"
BROKEN = "tiny-broken"
SWITCHED = f"{TINY}+{EMBEDDED}"  # the imported sentiment model beside the embedded emotion


def import_tiny_models(root: Path, scratch: Path) -> Path:
    """`root` as MODELS_DIR holding `tiny-sent`, imported from a random 1-layer RoBERTa
    classifier by `model import`'s code, and `tiny-broken`, a copy whose model.onnx is
    garbage."""
    from sentiment_platform.training.hf_import import ImportRequest, import_model

    source = build_tiny_classifier(scratch / "tiny", SENTIMENT_LABELS, layers=1, seed=0)
    import_model(ImportRequest(source=str(source), task=Task.SENTIMENT, models_dir=root, name=TINY))
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


async def committed(sessions: Sessions, work: Any) -> Any:
    async with sessions() as session, session.begin():
        return await work(session)


async def register_tiny_models(sessions: Sessions, models_dir: Path, clear: bool) -> None:
    """Register both tiny models (as `model import` does), on an emptied registry if `clear`."""
    if clear:
        async with sessions() as session, session.begin():
            await session.execute(delete(ModelActivation))
            await session.execute(delete(AnalysisModel))
    for name in (TINY, BROKEN):
        manifest = json.loads((models_dir / name / "model.json").read_text())
        await committed(sessions, lambda s, m=manifest: registry.register(s, m))


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
