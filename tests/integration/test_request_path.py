"""What a request pays for: /api/health shares a clean answer for a second, and the request
metrics come from a raw ASGI middleware (same series as the instrumentator's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentiment_platform.api import probes
from tests.integration.test_hardening import client_for, sample, sqlite

pytestmark = pytest.mark.asyncio


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each run of the store and bus checks, with the database verdict it returned."""
    runs: list[str] = []
    real = probes.run_checks

    async def counting(api, factory):  # type: ignore[no-untyped-def]
        checks = await real(api, factory)
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
