"""What a request pays for: /api/health shares a clean answer for a second, the request
metrics come from a raw ASGI middleware (same series as the instrumentator's), and sessions
are handed out in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sentiment_platform.api import deps, probes
from sentiment_platform.api.schemas import MetricsQuery
from tests.integration.test_hardening import client_for, sample, sqlite
from tests.support.app_client import app_client

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
        app.state.api.health_cache.drop()  # what a request meeting an outage does (api.errors)
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
    # Queued requests wait their turn: a timeout no slow turn on a busy CI box comes near
    # (at 0.3 s, twelve requests through two sessions were a race against the machine).
    monkeypatch.setattr(deps, "POOL_TIMEOUT_S", 30.0)
    async with client_for(sqlite(tmp_path, db_pool_size=2)) as client:
        gate = client._transport.app.state.api.session_gate  # type: ignore[attr-defined]
        answers = await asyncio.gather(*(client.get("/api/posts") for _ in range(12)))
        assert {answer.status_code for answer in answers} == {200}
        assert gate._value == 2  # every session given back
        monkeypatch.setattr(deps, "POOL_TIMEOUT_S", 0.3)  # and one that waits it out: a 503
        for _ in range(2):
            await gate.acquire()  # two long requests hold both
        busy = await client.get("/api/posts")
        assert busy.status_code == 503 and busy.headers["Retry-After"]
        assert "every database connection was busy" in busy.json()["detail"]
        gate.release()
        assert (await client.get("/api/posts")).status_code == 200


@pytest.mark.parametrize("limit", [0, 1_000], ids=["unlimited", "rate-limited"])
async def test_a_fresh_shared_answer_is_sent_before_routing_as_the_route_sends_it(
    database, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """With the rate limit off, a fresh metrics answer relative to now is sent without
    validating the query again (the route is not run), byte for byte and header for header
    what the route sent, and counted under the route's handler. An expired answer, an
    absolute range and a query string never validated are routed; with the limit on, every
    request is (each one must be counted)."""
    validations: list[str] = []
    validate = MetricsQuery.model_validate

    def counting(values, **kwargs):  # type: ignore[no-untyped-def]
        validations.append(values.get("window_minutes", ""))
        return validate(values, **kwargs)

    monkeypatch.setattr(MetricsQuery, "model_validate", counting)
    settings, session_factory = database
    update = {"metrics_cache_s": 0.5, "rate_limit_per_minute": limit}
    async with app_client(settings.model_copy(update=update), session_factory) as (_, client):
        day = "/api/metrics?window_minutes=1440"
        routed, again = await client.get(day), await client.get(day)
        assert routed.status_code == again.status_code == 200
        assert again.content == routed.content
        assert again.headers.multi_items() == routed.headers.multi_items()
        assert len(validations) == (1 if limit == 0 else 2)
        await client.get("/api/metrics?window_minutes=1440&")  # another query string
        assert (await client.get("/api/metrics?window_minutes=0")).status_code == 422
        assert (await client.get("/api/metrics?window_minutes=0")).status_code == 422
        start = "/api/metrics?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
        await client.get(start)
        await client.get(start)
        assert len(validations) == (6 if limit == 0 else 7)
        await asyncio.sleep(0.6)  # expired: routed, recomputed, fresh again
        await client.get(day)
        await client.get(day)
        assert len(validations) == (7 if limit == 0 else 9)
        text = (await client.get("/metrics")).text
    series = 'http_requests_total{handler="/api/metrics",method="GET",status="%s"}'
    assert (sample(text, series % "2xx"), sample(text, series % "4xx")) == (7, 2)
