"""Routing by language (issue 31), end to end through a worker, on SQLite and PostgreSQL: the
embedded model labels only English; a post no model reads is stored, counted under its
language and left `unsupported_language`; a model imported for `fr` labels French and never
English; `UNSUPPORTED_LANGUAGES=english` gives every post the English model; an LLM fallback
(a loopback server speaking the OpenAI API) labels what no local model reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, text

from sentiment_platform import store
from sentiment_platform.bus.memory import MemoryBus, MemoryEvents
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, create_session_factory, upgrade_schema
from sentiment_platform.domain import UNSUPPORTED_LANGUAGE, Post, PostView, Task
from sentiment_platform.models.database import AnalysisModel, ModelActivation, PostRollup
from sentiment_platform.pipeline.worker import Worker, WorkerConfig
from sentiment_platform.services.analysis import registry
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer
from tests.support import model_switch
from tests.support.app_client import app_client
from tests.support.fake_llm import openai_chat
from tests.support.hf_tiny import HARTMANN_LABELS, SENTIMENT_LABELS, build_tiny_classifier
from tests.support.model_switch import EMBEDDED, Sessions, committed
from tests.support.pipeline import wait_until

pytestmark = pytest.mark.asyncio

backing = model_switch.backing  # the fixture: SQLite, then PostgreSQL
FAST = WorkerConfig(batch_size=50, block_ms=50, claim_idle_ms=60_000, retry_base_s=0.05)
FRENCH_PAIR = "tiny-fr+tiny-fr-emo"  # the `model` an analysis by the two French models stores
POSTS = {
    "en1": "I absolutely love this new phone, the camera is amazing and the battery lasts",
    "en2": "The delivery was late again and nobody at support answers the phone, awful",
    "fr1": "Je déteste ce service, c'est vraiment nul et beaucoup trop lent pour le prix",
    "fr2": "Merci beaucoup pour votre aide, l'équipe a été très gentille avec moi aujourd'hui",
    "de1": "Ich bin sehr enttäuscht von diesem Produkt, es ist schrecklich und viel zu teuer",
}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MODELS_DIR holding a tiny sentiment and a tiny emotion model, both imported for `fr`."""
    from sentiment_platform.training.hf_import import ImportRequest, import_model

    root, scratch = tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("hf")
    for name, task, labels in (
        ("tiny-fr", Task.SENTIMENT, SENTIMENT_LABELS),
        ("tiny-fr-emo", Task.EMOTION, HARTMANN_LABELS),
    ):
        source = build_tiny_classifier(scratch / name, labels, layers=1, seed=0)
        request = ImportRequest(
            source=str(source), task=task, models_dir=root, name=name, languages=["fr"], force=True
        )
        import_model(request)
    return root


@pytest_asyncio.fixture
async def sessions(backing: tuple[str, Sessions | None]) -> AsyncIterator[tuple[str, Sessions]]:
    """A store other sessions see commits of, its registry emptied before and after."""
    url, shared = backing
    engine = None
    if shared is None:
        engine = create_engine(Settings(database_url=url))
        await upgrade_schema(engine)
        shared = create_session_factory(engine)
    await _clear_registry(shared)
    yield url, shared
    await _clear_registry(shared)
    if engine is not None:
        await engine.dispose()


async def _clear_registry(sessions: Sessions) -> None:
    """The registry emptied, and the counts other tests left in the shared database."""
    async with sessions() as session, session.begin():
        await session.execute(delete(ModelActivation))
        await session.execute(delete(AnalysisModel))
        await session.execute(delete(PostRollup))


async def _settle(settings: Settings, sessions: Sessions) -> dict[str, PostView]:
    """POSTS through one worker with the configured chain; the stored posts by id, each
    checked against the `/ws` event that announced it."""
    analyzer = await asyncio.to_thread(SentimentAnalyzer.from_settings, settings)
    bus, events = MemoryBus(), MemoryEvents()
    announced = events.subscribe()
    worker = Worker(bus, events, sessions, analyzer, "w", FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await bus.publish([Post(post_id=k, source="t", content=v) for k, v in POSTS.items()])

        async def all_stored() -> bool:
            async with sessions() as session:
                return len(await store.posts_by_ids(session, list(POSTS))) == len(POSTS)

        await wait_until(all_stored, 30, "every post stored")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(analyzer.close)
    async with sessions() as session:
        stored = {view.post_id: view for view in await store.posts_by_ids(session, list(POSTS))}
    for _ in POSTS:
        event = await asyncio.wait_for(announced.__anext__(), 5)
        view = stored[event.data["post_id"]]
        assert event.data == view.model_dump(mode="json", exclude={"label"}) | {"label": None}
    return stored


def _settings(url: str, **more: Any) -> Settings:
    return Settings(database_url=url, analyzer_backends=["embedded"], embedded_threads=1, **more)


def _unsupported(view: PostView, language: str) -> None:
    assert view.language == language
    assert view.analysis == UNSUPPORTED_LANGUAGE
    assert (view.sentiment, view.emotion, view.model) == (None, None, None)


async def _rollups(sessions: Sessions) -> dict[tuple[str, str], int]:
    """{(language, sentiment): posts} of the minute cells ('' sentiment: unanalysed)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT language, sentiment, sum(count) FROM post_rollups WHERE grain = 'm' "
                "GROUP BY language, sentiment"
            )
        )
    return {(language, sentiment): int(count) for language, sentiment, count in rows}


async def test_only_the_english_post_is_labelled_by_the_embedded_model(
    sessions: tuple[str, Sessions],
) -> None:
    url, factory = sessions
    posts = await _settle(_settings(url), factory)
    for post_id in ("en1", "en2"):
        english = posts[post_id]
        assert (english.language, english.model, english.analysis) == ("en", EMBEDDED, None)
        assert english.sentiment is not None and english.emotion is not None
    _unsupported(posts["fr1"], "fr")
    _unsupported(posts["fr2"], "fr")
    _unsupported(posts["de1"], "de")
    counted = await _rollups(factory)
    assert counted[("fr", "")] == 2 and counted[("de", "")] == 1
    assert sum(n for (language, _), n in counted.items() if language == "en") == 2
    assert ("en", "") not in counted
    async with factory() as session:
        analyses = await session.scalar(text("SELECT count(*) FROM sentiment_analysis"))
    assert analyses == 2  # no analysis row for a post no model read
    async with app_client(_settings(url), factory) as (_, client):  # as a user reads them
        page = (await client.get("/api/posts", params={"limit": 10})).json()
    items = {item["post_id"]: item for item in page["items"]}
    assert items == {k: v.model_dump(mode="json") for k, v in posts.items()}
    assert (items["de1"]["language"], items["de1"]["analysis"]) == ("de", UNSUPPORTED_LANGUAGE)


async def test_a_model_imported_for_french_labels_french_and_never_english(
    sessions: tuple[str, Sessions], models_dir: Path
) -> None:
    url, factory = sessions
    for name in ("tiny-fr", "tiny-fr-emo"):
        manifest = json.loads((models_dir / name / "model.json").read_text())
        await committed(factory, lambda s, m=manifest: registry.register(s, m))
        await committed(factory, lambda s, n=name: registry.activate(s, n, None, "fr"))
    posts = await _settle(_settings(url, models_dir=str(models_dir)), factory)
    assert {posts[k].model for k in ("fr1", "fr2")} == {FRENCH_PAIR}
    assert {posts[k].model for k in ("en1", "en2")} == {EMBEDDED}
    _unsupported(posts["de1"], "de")  # neither the French pair nor the English model reads it


async def test_a_french_model_with_no_french_emotion_model_leaves_french_unanalysed(
    sessions: tuple[str, Sessions], models_dir: Path
) -> None:
    """A pair labels both tasks: the embedded emotion model is not registered for `fr`."""
    url, factory = sessions
    manifest = json.loads((models_dir / "tiny-fr" / "model.json").read_text())
    await committed(factory, lambda s: registry.register(s, manifest))
    await committed(factory, lambda s: registry.activate(s, "tiny-fr", None, "fr"))
    posts = await _settle(_settings(url, models_dir=str(models_dir)), factory)
    _unsupported(posts["fr1"], "fr")
    assert posts["en1"].model == EMBEDDED


async def test_unsupported_languages_english_labels_every_post_with_the_english_model(
    sessions: tuple[str, Sessions],
) -> None:
    url, factory = sessions
    posts = await _settle(_settings(url, unsupported_languages="english"), factory)
    assert {view.model for view in posts.values()} == {EMBEDDED}
    assert {view.analysis for view in posts.values()} == {None}
    assert {posts[k].language for k in ("fr1", "fr2", "de1")} == {"fr", "de"}


async def test_the_llm_fallback_labels_what_no_local_model_reads(
    sessions: tuple[str, Sessions],
) -> None:
    url, factory = sessions
    with openai_chat() as base_url:
        settings = Settings(
            database_url=url,
            analyzer_backends=["embedded", "llm"],
            embedded_threads=1,
            llm_provider="openai",
            llm_api_key="sk-test-routing",
            llm_base_url=base_url,
        )
        posts = await _settle(settings, factory)
    llm = "llm/openai/gpt-4o-mini"
    assert {posts[k].model for k in ("fr1", "fr2", "de1")} == {llm}
    assert {posts[k].language for k in ("fr1", "de1")} == {"fr", "de"}
    assert {posts[k].model for k in ("en1", "en2")} == {EMBEDDED}
