"""`/ws?language=…&unique=…`: each client's `metrics` pushes filtered as `/api/metrics`
filters them (issue 31), one computation per filter a tick; a bad filter is refused with
the field named. A real uvicorn server in a thread over an embedded SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sentiment_platform.api import ws_metrics
from sentiment_platform.config import Settings
from sentiment_platform.db import create_engine, upgrade_schema
from sentiment_platform.domain import utcnow
from tests.integration.test_live import next_of
from tests.support.languages import seed_languages
from tests.support.servers import ThreadedServer

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Settings]:
    """An embedded store holding tests/support/languages.py's posts, all in the last hour,
    the live window an hour long."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}",
        alert_window_minutes=60,
        embedded_worker=False,
    )
    engine = create_engine(settings)
    await upgrade_schema(engine)
    await seed_languages(async_sessionmaker(engine), utcnow() - timedelta(minutes=56))
    await engine.dispose()
    yield settings


async def test_each_client_gets_the_metrics_of_its_filter(seeded: Settings) -> None:
    with ThreadedServer(seeded) as server:
        base = server.url
        async with (
            connect(base) as every,
            connect(base + "?language=fr") as french,
            connect(base + "?unique=true&batch=1") as once,
            connect(base + "?language=EN&unique=1") as english_once,
        ):
            plain = await next_of(every, "metrics", 5.0)
            assert (plain["total"], plain["duplicates"], plain["unanalysed"]) == (1_510, 400, 100)
            assert plain["language"] is None and plain["unique"] is False
            fr = await next_of(french, "metrics", 5.0)
            assert (fr["total"], fr["by_language"], fr["language"]) == (200, {"fr": 200}, "fr")
            unique = await next_of(once, "metrics", 5.0)
            assert unique["total"] == 1_110 and unique["unique"] is True
            en = await next_of(english_once, "metrics", 5.0)
            assert (en["total"], en["language"], en["unique"]) == (800, "en", True)


@pytest.mark.parametrize(
    ("query", "field"), [("language=english", "language"), ("unique=sometimes", "unique")]
)
async def test_a_bad_filter_is_refused_naming_it(seeded: Settings, query: str, field: str) -> None:
    with ThreadedServer(seeded) as server:
        async with connect(f"{server.url}?{query}") as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason.startswith(f"{field}:")


async def test_filters_per_process_are_bounded(
    seeded: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sentiment_platform.api.hub.MAX_FILTERS", 2)
    with ThreadedServer(seeded) as server:
        async with connect(server.url + "?language=fr") as kept:
            await next_of(kept, "metrics", 5.0)
            async with connect(server.url + "?language=de") as refused:
                with pytest.raises(ConnectionClosed) as closed:
                    await refused.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            async with connect(server.url + "?language=fr") as shared:  # in use: served
                assert (await next_of(shared, "metrics", 5.0))["language"] == "fr"


async def test_filter_of_reads_the_query_string() -> None:
    assert ws_metrics.filter_of({}) == ws_metrics.EVERY_POST
    assert ws_metrics.filter_of({"language": "und", "unique": "yes"}) == (
        ws_metrics.MetricsFilter("und", True)
    )
