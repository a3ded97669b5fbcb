"""The model registry (issue 32) through its service and the store, on SQLite and PostgreSQL:
the embedded model listed first, activation per task and language with its refusals, removal
with its refusals, and the version the workers poll."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.domain import utcnow
from sentiment_platform.errors import Conflict, NotFound, Unprocessable
from sentiment_platform.services.analysis import registry
from sentiment_platform.services.analysis.model_catalogue import catalogue
from sentiment_platform.services.analysis.registry import ANY_LANGUAGE, embedded_identity

pytestmark = pytest.mark.asyncio

Database = tuple[Settings, async_sessionmaker[AsyncSession]]


def manifest(name: str, task: str = "sentiment", **extra: Any) -> dict[str, Any]:
    """A model.json as `model import` writes it."""
    labels = ["negative", "neutral", "positive"] if task == "sentiment" else ["anger", "joy"]
    return {
        "name": name,
        "task": task,
        "labels": labels,
        "source": f"hub/{name}",
        "architecture": "roberta",
        "max_length": 64,
        "languages": ["en", "de"],
        "agreement": 0.99,
        "sample_size": 200,
        "size_bytes": 1234,
        "posts_per_s": 500.0,
        "imported_at": utcnow().isoformat(),
        "format": 1,
        **extra,
    }


async def in_transaction(sessions: async_sessionmaker[AsyncSession], work: Any) -> Any:
    async with sessions() as session, session.begin():
        return await work(session)


@pytest.fixture
def embedded_name() -> str:
    identity = embedded_identity()
    assert identity is not None, "the embedded model ships with the package"
    return identity.name


async def test_the_embedded_model_is_the_first_entry_and_serves_both_tasks(
    database: Database, embedded_name: str
) -> None:
    _, sessions = database
    assert await in_transaction(sessions, registry.ensure_embedded) == embedded_name
    assert await in_transaction(sessions, registry.ensure_embedded) == embedded_name  # idempotent
    await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
    view = await in_transaction(sessions, catalogue)
    first, second = view.items
    assert (first.name, first.kind, first.tasks) == (
        embedded_name,
        "embedded",
        ["sentiment", "emotion"],
    )
    assert first.languages == ["en"] and first.size_bytes > 1_000_000
    assert {(a.task, a.language) for a in first.active} == {
        ("sentiment", "*"),
        ("emotion", "*"),
    }
    assert (second.name, second.kind, second.tasks, second.agreement) == (
        "tiny",
        "onnx",
        ["sentiment"],
        0.99,
    )
    assert second.active == [] and second.details["architecture"] == "roberta"
    assert view.active == {"sentiment": {"*": embedded_name}, "emotion": {"*": embedded_name}}


async def test_activation_per_task_and_language_and_its_refusals(
    database: Database, embedded_name: str
) -> None:
    _, sessions = database
    await in_transaction(sessions, registry.ensure_embedded)
    await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
    await in_transaction(sessions, lambda s: registry.register(s, manifest("feel", "emotion")))

    async def activate(name: str, task: str | None = None, language: str = "*") -> Any:
        return await in_transaction(sessions, lambda s: registry.activate(s, name, task, language))

    # A model that serves one task needs no --task.
    assert await activate("tiny") == [("sentiment", "*")]
    assert await activate("feel", language="DE") == [("emotion", "de")]
    view = await in_transaction(sessions, catalogue)
    assert view.active == {
        "sentiment": {"*": "tiny"},
        "emotion": {"*": embedded_name, "de": "feel"},
    }
    with pytest.raises(NotFound, match="no model named 'nope'"):
        await activate("nope")
    with pytest.raises(Unprocessable, match="--task emotion: model 'tiny' serves sentiment"):
        await activate("tiny", "emotion")
    with pytest.raises(Unprocessable, match="--task 'mood'"):
        await activate("tiny", "mood")
    with pytest.raises(Unprocessable, match="--language 'english'"):
        await activate("tiny", language="english")
    with pytest.raises(Unprocessable, match="--language fr: model 'tiny' is registered for en, de"):
        await activate("tiny", language="fr")
    # The embedded model: no --task activates both; `embedded` names it too.
    assert await activate("embedded") == [("sentiment", "*"), ("emotion", "*")]
    with pytest.raises(Unprocessable, match="--language de: model '.*' is registered for en"):
        await activate(embedded_name, "sentiment", "de")
    assert await activate(embedded_name, "sentiment", "en") == [("sentiment", "en")]
    view = await in_transaction(sessions, catalogue)
    assert view.active == {
        "sentiment": {"*": embedded_name, "en": embedded_name},
        "emotion": {"*": embedded_name, "de": "feel"},
    }
    # No row for a task's `*`: the embedded model, as before the registry.
    rows = await in_transaction(sessions, store.list_activations)
    assert [(r.task, r.language, r.name) for r in rows] == [
        ("emotion", "de", "feel"),
        ("sentiment", "en", embedded_name),
    ]


async def test_two_names_that_would_not_fit_an_analysis_are_refused(database: Database) -> None:
    _, sessions = database
    await in_transaction(sessions, registry.ensure_embedded)
    long_s, long_e = "s" * 70, "e" * 70
    await in_transaction(sessions, lambda s: registry.register(s, manifest(long_s)))
    await in_transaction(sessions, lambda s: registry.register(s, manifest(long_e, "emotion")))
    await in_transaction(sessions, lambda s: registry.activate(s, long_s))
    with pytest.raises(Unprocessable, match="together exceed 128 characters"):
        await in_transaction(sessions, lambda s: registry.activate(s, long_e))


async def test_removal_refuses_the_active_and_the_embedded_model(
    database: Database, embedded_name: str
) -> None:
    settings, sessions = database
    await in_transaction(sessions, registry.ensure_embedded)
    await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
    await in_transaction(sessions, lambda s: registry.activate(s, "tiny", None, "en"))

    async def remove(name: str) -> str:
        return await in_transaction(sessions, lambda s: registry.remove(s, name))  # type: ignore[no-any-return]

    with pytest.raises(Conflict, match=r"model 'tiny' is active for sentiment \(en\)"):
        await remove("tiny")
    with pytest.raises(Conflict, match="is the embedded model"):
        await remove(embedded_name)
    with pytest.raises(NotFound, match="no model named 'ghost'"):
        await remove("ghost")
    await in_transaction(sessions, lambda s: registry.activate(s, "embedded", "sentiment", "en"))
    assert await remove("tiny") == "tiny"
    view = await in_transaction(sessions, catalogue)
    assert [item.name for item in view.items] == [embedded_name]


async def test_remove_files_stays_inside_models_dir(database: Database, tmp_path: Any) -> None:
    settings, _ = database
    settings = settings.model_copy(update={"models_dir": str(tmp_path / "models")})
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "models" / "tiny" / "model.onnx").write_bytes(b"x")
    assert registry.remove_files(settings, "tiny") is True
    assert not (tmp_path / "models" / "tiny").exists()
    assert registry.remove_files(settings, "tiny") is False
    for name in ("..", "../elsewhere", "/etc"):
        with pytest.raises(Unprocessable, match="not a directory name inside MODELS_DIR"):
            registry.remove_files(settings, name)


async def test_imported_names_must_not_clash(database: Database, embedded_name: str) -> None:
    _, sessions = database
    await in_transaction(sessions, registry.ensure_embedded)
    for clash in (embedded_name, "embedded"):
        with pytest.raises(Conflict, match="is the embedded model's"):
            await in_transaction(sessions, lambda s, c=clash: registry.register(s, manifest(c)))
    await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
    with pytest.raises(Conflict, match="already serves sentiment"):
        await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny", "emotion")))
    # Imported again under its name: its row is replaced, not doubled.
    again = manifest("tiny", agreement=0.5)
    await in_transaction(sessions, lambda s: registry.register(s, again))
    rows = await in_transaction(sessions, lambda s: store.model_rows(s, "tiny"))
    assert [(r.task, r.agreement) for r in rows] == [("sentiment", 0.5)]


async def test_an_upgraded_embedded_model_takes_over_its_rows_and_activations(
    database: Database, embedded_name: str
) -> None:
    _, sessions = database
    old = "embedded/minilm-v0"

    async def old_artifact(session: AsyncSession) -> None:
        for task in ("sentiment", "emotion"):
            await store.put_model(
                session,
                name=old,
                task=task,
                kind="embedded",
                languages=["en"],
                source="embedded",
                size_bytes=1,
                agreement=None,
                imported_at=utcnow(),
                details={},
            )
        await store.set_activation(session, "sentiment", "en", old, utcnow())

    await in_transaction(sessions, old_artifact)
    await in_transaction(sessions, registry.ensure_embedded)
    models = await in_transaction(sessions, store.list_models)
    assert {(m.name, m.task) for m in models} == {
        (embedded_name, "sentiment"),
        (embedded_name, "emotion"),
    }
    [activation] = await in_transaction(sessions, store.list_activations)
    assert (activation.language, activation.name) == ("en", embedded_name)


async def test_the_polled_version_moves_with_every_change_a_worker_must_see(
    database: Database,
) -> None:
    _, sessions = database
    await in_transaction(sessions, registry.ensure_embedded)
    await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
    seen = [await in_transaction(sessions, store.activation_version)]

    async def changed() -> bool:
        version = await in_transaction(sessions, store.activation_version)
        moved = version != seen[-1]
        seen.append(version)
        return moved

    assert seen[0] == ()  # nothing activated: the embedded model everywhere
    assert not await changed()
    await in_transaction(sessions, lambda s: registry.activate(s, "tiny"))
    assert await changed()
    assert not await changed()
    later = manifest("tiny", imported_at=(utcnow() + timedelta(seconds=5)).isoformat())
    await in_transaction(sessions, lambda s: registry.register(s, later))  # imported again
    assert await changed()
    await in_transaction(sessions, lambda s: registry.activate(s, "embedded", "sentiment"))
    assert await changed()
    assert seen[-1] == ()
    choice = await in_transaction(sessions, registry.serving_choice)
    assert {task: c.kind for task, c in choice.items()} == {
        "sentiment": "embedded",
        "emotion": "embedded",
    }
    assert ANY_LANGUAGE == "*"
    # A rescore with --model NAME: that model for its task, the active one for the other.
    named = await in_transaction(sessions, lambda s: registry.serving_choice(s, "tiny"))
    assert {task: (c.name, c.kind) for task, c in named.items()} == {
        "sentiment": ("tiny", "onnx"),
        "emotion": (embedded_identity().name, "embedded"),  # type: ignore[union-attr]
    }
    with pytest.raises(NotFound):
        await in_transaction(sessions, lambda s: registry.serving_choice(s, "ghost"))


async def test_get_api_models_lists_the_registry_and_what_serves_each_language(
    database: Database, embedded_name: str
) -> None:
    from tests.support.app_client import app_client

    settings, sessions = database
    async with app_client(settings, sessions) as (_, client):
        before = (await client.get("/api/models")).json()
        assert [item["name"] for item in before["items"]] == [embedded_name]
        await in_transaction(sessions, lambda s: registry.register(s, manifest("tiny")))
        await in_transaction(sessions, lambda s: registry.activate(s, "tiny", None, "de"))
        answer = await client.get("/api/models")
    assert answer.status_code == 200
    body = answer.json()
    assert body["active"] == {
        "sentiment": {"*": embedded_name, "de": "tiny"},
        "emotion": {"*": embedded_name},
    }
    embedded, tiny = body["items"]
    assert embedded["name"] == embedded_name and embedded["kind"] == "embedded"
    assert embedded["tasks"] == ["sentiment", "emotion"]
    assert {(a["task"], a["language"]) for a in embedded["active"]} == {
        ("sentiment", "*"),
        ("emotion", "*"),
    }
    assert {key: tiny[key] for key in ("name", "kind", "tasks", "languages", "source")} == {
        "name": "tiny",
        "kind": "onnx",
        "tasks": ["sentiment"],
        "languages": ["en", "de"],
        "source": "hub/tiny",
    }
    assert (tiny["size_bytes"], tiny["agreement"]) == (1234, 0.99)
    assert tiny["active"] == [{"task": "sentiment", "language": "de"}]
    assert tiny["imported_at"].endswith(("Z", "+00:00"))
