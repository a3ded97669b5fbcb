"""Health endpoints: `/livez` (the process answers), `/readyz` (it can do its job), and the
contract's `/api/health` (the same checks, reported as ok / degraded / down).

`/api/health` shares a good answer from the store and the bus for `HEALTH_CACHE_S` (1 s) per
process, one check at a time: a load balancer or sixty-four dashboards polling it cost one
`SELECT 1`, one Redis PING and one stream-stats call a second, not three round trips a
request (the backlog it reports is as old, a second at most). Only a clean bill is shared:
anything down or full is checked again on the next request, and any request that meets an
outage (a 503) drops the shared answer, so a failure shows within a second at most and a
recovery at once. The model and the process's own background loops are read on every
request (they cost nothing). `/readyz` always checks afresh.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from sentiment_platform import store
from sentiment_platform.api.deps import ApiDep, ApiParts
from sentiment_platform.api.schemas import Checks, Health
from sentiment_platform.runtime import Runtime
from sentiment_platform.telemetry import STREAM_LAG, STREAM_LENGTH, STREAM_PENDING

log = logging.getLogger(__name__)

router = APIRouter(tags=["probes"])

CHECK_TIMEOUT_S = 2.0
# Beside telemetry's stream gauges: only the probes set it, from the bus's own counts.
STREAM_BACKLOG = Gauge(
    "sentiment_stream_backlog", "Posts accepted but not yet acknowledged (STREAM_MAX_BACKLOG)"
)


async def run_checks(api: ApiParts) -> Checks:
    runtime = api.runtime
    try:
        async with api.sessions() as session:
            await asyncio.wait_for(store.ping(session), CHECK_TIMEOUT_S)
        database = "ok"
    except Exception as error:  # noqa: BLE001 - whatever the failure, the store is down
        database = f"down: {type(error).__name__}"
    bus = await runtime.bus.health()
    backlog = await _backlog(runtime) if not bus.startswith("down") else None
    limit = runtime.settings.stream_max_backlog
    if backlog is not None and backlog >= limit:
        bus = f"full: {backlog} posts not yet acknowledged (STREAM_MAX_BACKLOG={limit})"
    return Checks(
        database=database,
        redis=bus,
        model=runtime.model_answering,
        backlog=backlog,
        tasks=api.background.status(),
    )


async def _backlog(runtime: Runtime) -> int | None:
    """Accepted posts not yet acknowledged (and the gauges /metrics shows); None when the
    bus cannot say."""
    try:
        stats = await asyncio.wait_for(runtime.bus.stats(), CHECK_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - a bus that is down leaves the last figures
        log.warning(
            "stream stats unavailable",
            extra={"event": "probe.stats_unavailable", "error": type(error).__name__},
        )
        return None
    STREAM_LENGTH.set(stats.length)
    STREAM_PENDING.set(stats.pending)
    STREAM_LAG.set(stats.lag)
    STREAM_BACKLOG.set(stats.backlog)
    return stats.backlog


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and its event loop answers; no dependency is consulted."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(api: ApiDep, response: Response) -> Health:
    """Ready to take traffic: the store, the bus and (where it runs here) the model answer,
    and the process's background loops run."""
    checks = await run_checks(api)
    if checks.verdict != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status=checks.verdict, **_fields(checks))


@router.get("/api/health", response_model=Health, responses={503: {"model": Health}})
async def health(api: ApiDep, response: Response) -> Health:
    """200 when ok or degraded, 503 when the store is down or a background loop is gone.
    A clean answer from the store and the bus is shared for up to a second (see above)."""
    shared = await api.health_cache.get("health", lambda: run_checks(api), keep=_clean)
    # What this process knows of itself costs nothing: read now, never shared.
    checks = replace(shared, model=await _model(api), tasks=api.background.status())
    if checks.verdict == "down":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status=checks.verdict, **_fields(checks))


async def _model(api: ApiParts) -> str:
    """The model's status here; in Redis mode, whether the models the workers were told to
    serve load (`ModelCheck`), since no model runs in this process."""
    status = api.runtime.model_status
    if api.model_check is not None:
        problem = await api.model_check.problem(api.sessions)
        if problem:
            return f"down: {problem}"
    return status


@router.get("/metrics", include_in_schema=False)
async def metrics(api: ApiDep) -> Response:
    """Prometheus text: the process's own metrics, then this app's request metrics."""
    await _backlog(api.runtime)
    body = generate_latest(REGISTRY) + generate_latest(api.http_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _clean(checks: Checks) -> bool:
    """Only an answer with the store and the bus both fine is shared."""
    return checks.database == "ok" and not checks.redis.startswith(("down", "full"))


def _fields(checks: Checks) -> dict[str, Any]:
    return {
        "database": checks.database,
        "redis": checks.redis,
        "model": checks.model,
        "backlog": checks.backlog,
        "tasks": checks.tasks,
    }
