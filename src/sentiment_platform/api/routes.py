"""REST endpoints: parse, call the store or a service, answer. Nothing else lives here."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Request, status
from fastapi.responses import Response, StreamingResponse

from sentiment_platform import store
from sentiment_platform.api.deps import (
    ApiDep,
    BusDep,
    SessionDep,
    require_api_key,
)
from sentiment_platform.api.intake import already_stored, split_duplicates
from sentiment_platform.api.query import document, from_query
from sentiment_platform.api.schemas import (
    AlertsPage,
    AlertsQuery,
    ExportQuery,
    MetricsQuery,
    PostsAccepted,
    PostsFilterQuery,
    PostsPage,
    PostsQuery,
    problems,
)
from sentiment_platform.domain import AlertItem, OneOrManyPosts
from sentiment_platform.errors import Unprocessable
from sentiment_platform.services.reporting.aggregator import Metrics, compute_metrics
from sentiment_platform.services.reporting.export import (
    MEDIA_TYPES,
    ExportTooLarge,
    export_chunks,
    row_cap,
)
from sentiment_platform.services.retention import posts_cutoff
from sentiment_platform.telemetry import POSTS_INGESTED

router = APIRouter(prefix="/api", responses=problems(422, 429, 503))
PostsQueryDep = Annotated[PostsQuery, from_query(PostsQuery)]
ExportQueryDep = Annotated[ExportQuery, from_query(ExportQuery)]
MetricsQueryDep = Annotated[MetricsQuery, from_query(MetricsQuery)]
AlertsQueryDep = Annotated[AlertsQuery, from_query(AlertsQuery)]


def _post_filter(query: PostsFilterQuery, **more: Any) -> store.PostFilter:
    return store.PostFilter(
        sentiment=query.sentiment_filter,
        emotion=query.emotion,
        source=query.source,
        since=query.since,
        until=query.until,
        text=query.q,
        language=query.language,
        **more,
    )


@router.get("/posts", response_model=PostsPage)
async def list_posts(api: ApiDep, query: PostsQueryDep) -> Response:
    """Newest first. Continue with `cursor` = the previous page's `next_cursor` (a cursor
    page costs the same at any depth); `offset` skips rows one by one (cost grows with it).

    `total` is shared for METRICS_CACHE_S seconds per filter, like a metrics answer: the
    page is always read fresh. The items are the store's rows, typed by the table, encoded
    as they are (the schema above is what they are; validating 50 models cost more than
    the query). The reads run on a bare connection (`ApiParts.reading`), opened here, not
    declared: every declared dependency is solved by FastAPI on every request."""
    where = _post_filter(
        query,
        limit=query.limit,
        offset=query.offset,
        cursor=store.decode_cursor(query.cursor) if query.cursor else None,
    )
    settings = api.runtime.settings
    cutoff = posts_cutoff(settings)
    matching = replace(where, limit=0, offset=0, cursor=None)  # the page's place is no part
    async with api.reading() as connection:
        items, next_cursor = await store.posts_page(connection, where)

        async def count() -> tuple[int, bool]:
            return await store.count_matches(connection, where, cutoff)

        shared = await api.counts_cache.get((matching, cutoff), count)
    assert isinstance(shared, tuple)
    total, capped = shared
    body = {
        "items": items,
        "total": total,
        "limit": query.limit,
        "offset": query.offset,
        "next_cursor": next_cursor,
        "total_capped": capped,
    }
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.get(
    "/posts/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
async def export_posts(
    session: SessionDep, api: ApiDep, query: ExportQueryDep
) -> StreamingResponse:
    """Every matching post, newest first, as CSV or JSON Lines, streamed. Without
    `since`/`until` an export over EXPORT_MAX_ROWS is refused (422), and holds at most that
    many rows. CSV cells that a spreadsheet would run as a formula start with `'`."""
    where = _post_filter(query)
    settings = api.runtime.settings
    try:
        cap = await row_cap(session, where, settings.export_max_rows, posts_cutoff(settings))
    except ExportTooLarge as error:
        raise Unprocessable(str(error)) from None
    await session.close()  # the stream opens its own session, for as long as it runs
    return StreamingResponse(
        export_chunks(api.sessions, where, query.format, max_rows=cap),
        media_type=MEDIA_TYPES[query.format],
        headers={"Content-Disposition": f'attachment; filename="posts.{query.format}"'},
    )


@router.post(
    "/posts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PostsAccepted,
    dependencies=[Depends(require_api_key)],
    responses=problems(400, 401, 413),
)
async def submit_posts(
    api: ApiDep,
    bus: BusDep,
    body: Annotated[OneOrManyPosts, Body()],
) -> PostsAccepted:
    """Queue posts for analysis; they appear in GET /api/posts once analysed. A post whose
    `post_id` is already stored, or repeated within the request, is not queued again: it is
    listed in `duplicates`, so a retry with the same post_id is idempotent and says so."""
    posts = body if isinstance(body, list) else [body]
    stored = await already_stored(api, posts)
    fresh, duplicates = split_duplicates(posts, stored or set())
    if fresh:
        await bus.publish(fresh)
    POSTS_INGESTED.labels(producer="api").inc(len(fresh))
    return PostsAccepted(
        accepted=len(fresh),
        post_ids=[post.post_id for post in posts],
        duplicates=duplicates,
        duplicates_checked=stored is not None,
    )


@router.get("/metrics", response_model=Metrics)
async def metrics(request: Request, api: ApiDep, query: MetricsQueryDep) -> Response:
    """From the rollups, at minute precision. An answer relative to now (no start/end) is
    shared for METRICS_CACHE_S seconds, computed once per key at a time; what is shared is
    the encoded body, so a cached answer costs no serialisation and no session (the one
    unit of work opens only when the answer is computed), and while fresh is sent before
    routing (`api/fresh_answers.py`)."""
    start, end = query.start, query.end
    assert start is not None and end is not None  # resolved by the schema

    async def compute() -> bytes:
        async with api.reading(generic=True) as connection:
            answer = await compute_metrics(
                connection,
                start,
                end,
                query.bucket,
                query.source,
                language=query.language,
                unique=query.unique,
                min_labels=api.runtime.settings.min_estimate_labels,
            )
        return answer.model_dump_json().encode()

    if query.relative_to_now:
        key = (query.window_minutes or 60, query.bucket, query.source, query.language, query.unique)
        body = await api.counts_cache.get(key, compute)
        assert isinstance(body, bytes)
        api.fresh_answers.note(request, api.counts_cache, key)
    else:
        body = await compute()
    return Response(body, media_type="application/json")


@router.get("/alerts", response_model=AlertsPage)
async def list_alerts(request: Request, api: ApiDep, query: AlertsQueryDep) -> Response:
    """Newest first. A page is shared for METRICS_CACHE_S seconds per query (and while
    fresh sent before routing), and dropped as soon as this process hears of an alert
    firing or resolving: the list a dashboard reads after an `alert` event already holds
    it."""

    async def compute() -> bytes:
        async with api.session() as session:
            alerts, total = await store.list_alerts(session, query.limit, query.since, query.rule)
        items = [AlertItem.model_validate(alert) for alert in alerts]
        return AlertsPage(items=items, total=total).model_dump_json().encode()

    key = (query.limit, query.since, query.rule)
    body = await api.alerts_cache.get(key, compute)
    api.fresh_answers.note(request, api.alerts_cache, key)
    return Response(body, media_type="application/json")


document(router)
