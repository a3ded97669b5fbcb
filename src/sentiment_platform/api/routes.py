"""REST endpoints: parse, call the store or a service, answer. Nothing else lives here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, status

from sentiment_platform import store
from sentiment_platform.api.deps import BusDep, SessionDep, require_api_key
from sentiment_platform.api.schemas import (
    AlertsPage,
    AlertsQuery,
    MetricsQuery,
    PostsAccepted,
    PostsPage,
    PostsQuery,
    problems,
)
from sentiment_platform.domain import AlertItem, OneOrManyPosts
from sentiment_platform.services.aggregator import Metrics, compute_metrics
from sentiment_platform.telemetry import POSTS_INGESTED

router = APIRouter(prefix="/api", responses=problems(422, 429, 503))


@router.get("/posts", response_model=PostsPage)
async def list_posts(session: SessionDep, query: Annotated[PostsQuery, Query()]) -> PostsPage:
    where = store.PostFilter(
        limit=query.limit,
        offset=query.offset,
        sentiment=query.sentiment_filter,
        emotion=query.emotion,
        source=query.source,
        since=query.since,
        until=query.until,
        text=query.q,
    )
    items, total = await store.list_posts(session, where)
    return PostsPage(items=items, total=total, limit=query.limit, offset=query.offset)


@router.post(
    "/posts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PostsAccepted,
    dependencies=[Depends(require_api_key)],
    responses=problems(400, 401, 413),
)
async def submit_posts(
    bus: BusDep,
    body: Annotated[OneOrManyPosts, Body()],
) -> PostsAccepted:
    """Queue posts for analysis; they appear in GET /api/posts once analysed."""
    posts = body if isinstance(body, list) else [body]
    await bus.publish(posts)
    POSTS_INGESTED.labels(producer="api").inc(len(posts))
    return PostsAccepted(accepted=len(posts), post_ids=[post.post_id for post in posts])


@router.get("/metrics", response_model=Metrics)
async def metrics(session: SessionDep, query: Annotated[MetricsQuery, Query()]) -> Metrics:
    assert query.start is not None and query.end is not None  # resolved by the schema
    return await compute_metrics(session, query.start, query.end, query.bucket, query.source)


@router.get("/alerts", response_model=AlertsPage)
async def list_alerts(session: SessionDep, query: Annotated[AlertsQuery, Query()]) -> AlertsPage:
    alerts, total = await store.list_alerts(session, query.limit, query.since, query.rule)
    return AlertsPage(items=[AlertItem.model_validate(a) for a in alerts], total=total)
