"""What a request pays for: /api/health shares a clean answer for a second, the request
metrics come from a raw ASGI middleware (same series as the instrumentator's), and sessions
are handed out in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sentiment_platform.api import deps, probes
from tests.integration.test_hardening import client_for, sample, sqlite

pytestmark = pytest.mark.asyncio


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each run of the store and bus checks, with the database verdict it returned."""
    runs: list[str] = []
    real = probes.run_checks

    async def counting(api):  # type: ignore[no-untyped-def]
        checks = await real(api)
        runs.append(checks.database)
        return checks

    monkeypatch.setattr(probes, "run_checks", counting)
    return runs


async def test_health_shares_a_clean_answer_and_drops_it_on_an_outage(
    tmp_path: Path, counted_checks: list[str]
) -> None:
    async with client_for(sqlite(tmp_path)) as client:
        for _ in range(5):
            health = await client.get("/api/health")
            assert health.status_code == 200 and health.json()["database"] == "ok"
        assert counted_checks == ["ok"]  # one check for five answers
        app = client._transport.app  # type: ignore[attr-defined]
        app.state.api.health_cache.drop()  # what a request meeting an outage does (main._outage)
        await client.get("/api/health")
        assert counted_checks == ["ok", "ok"]


async def test_health_never_shares_a_bad_answer(counted_checks: list[str]) -> None:
    from sentiment_platform.config import Settings

    down = Settings(database_url="postgresql://postgres@127.0.0.1:9/nowhere", embedded_worker=False)
    async with client_for(down) as client:
        for _ in range(3):
            assert (await client.get("/api/health")).status_code == 503
    assert len(counted_checks) == 3 and all(v.startswith("down") for v in counted_checks)


async def test_request_metrics_name_the_route_template(tmp_path: Path) -> None:
    async with client_for(sqlite(tmp_path)) as client:
        await client.get("/api/alert-rules/12345")  # 404 from the handler: its template
        await client.get("/no/such/path")  # no route: `none`
        await client.get("/livez")
        text = (await client.get("/metrics")).text
    series = 'http_requests_total{handler="/api/alert-rules/{rule_id}",method="GET",status="4xx"}'
    assert sample(text, series) == 1
    assert sample(text, 'http_requests_total{handler="none",method="GET",status="4xx"}') == 1
    assert 'handler="/livez"' not in text and 'handler="/metrics"' not in text


async def test_requests_wait_their_turn_for_a_session_and_a_long_wait_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DB_POOL_SIZE requests hold a session at once; the others queue in arrival order, and
    one that waits the pool timeout out is told why."""
    monkeypatch.setattr(deps, "POOL_TIMEOUT_S", 0.3)
    async with client_for(sqlite(tmp_path, db_pool_size=2)) as client:
        gate = client._transport.app.state.api.session_gate  # type: ignore[attr-defined]
        answers = await asyncio.gather(*(client.get("/api/posts") for _ in range(12)))
        assert {answer.status_code for answer in answers} == {200}
        assert gate._value == 2  # every session given back
        for _ in range(2):
            await gate.acquire()  # two long requests hold both
        busy = await client.get("/api/posts")
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert "every database connection was busy" in busy.json()["detail"]
        gate.release()
        assert (await client.get("/api/posts")).status_code == 200
