"""The `model` commands against a real store, SQLite and PostgreSQL (issue 32): an import is
registered, `model list` shows the registry, `activate` and `remove` do what they say and
refuse, with one line and no traceback, what they must."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sentiment_platform import config
from sentiment_platform.cli import app
from sentiment_platform.services.analysis.registry import embedded_identity
from tests.support.databases import recreate_postgres_database, scratch_database_url
from tests.support.hf_tiny import SENTIMENT_LABELS, build_tiny_classifier

EMBEDDED = embedded_identity().name  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random classifier whose int8 import keeps the 97 % agreement."""
    return build_tiny_classifier(
        tmp_path_factory.mktemp("hf") / "tiny", SENTIMENT_LABELS, layers=1, seed=0
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """DATABASE_URL and MODELS_DIR of the test's own, as a user's environment sets them."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        url = scratch_database_url("modelcli")
        asyncio.run(recreate_postgres_database(url))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    config.get_settings.cache_clear()
    yield tmp_path / "models"
    config.get_settings.cache_clear()
    if request.param == "postgres":
        asyncio.run(recreate_postgres_database(url, create=False))


def model(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["model", *map(str, args)])


def refused(result: Result, message: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert message in result.output


def test_import_list_activate_remove(source: Path, store_env: Path) -> None:
    models_dir = store_env
    listed = model("list")
    assert listed.exit_code == 0, listed.output
    assert EMBEDDED in listed.output and "sentiment (*), emotion (*)" in listed.output

    imported = model("import", source, "--task", "sentiment", "--name", "tiny")
    assert imported.exit_code == 0, imported.output
    assert "imported 'tiny'" in imported.output
    listed = model("list")
    row = next(line for line in listed.output.splitlines() if "tiny" in line)
    for cell in ("tiny", "sentiment", "en", str(source)[:8], "B", "%", "UTC"):
        assert cell in row, row

    activated = model("activate", "tiny")
    assert activated.exit_code == 0, activated.output
    assert "activated 'tiny' for sentiment (*)" in activated.output
    refused(model("remove", "tiny"), "model 'tiny' is active for sentiment (*)")
    refused(model("activate", "tiny", "--task", "emotion"), "serves sentiment, not emotion")
    refused(model("activate", "tiny", "--language", "fr"), "is registered for en")
    refused(model("activate", "nope"), "no model named 'nope'")
    refused(model("remove", "embedded"), "is the embedded model")
    row = next(line for line in model("list").output.splitlines() if "tiny" in line)
    assert "sentiment (*)" in row

    back = model("activate", "embedded", "--task", "sentiment")
    assert back.exit_code == 0, back.output
    removed = model("remove", "tiny")
    assert removed.exit_code == 0, removed.output
    assert not (models_dir / "tiny").exists()
    assert "tiny" not in model("list").output
