"""Labels, the review queue and quality: `/api/posts/{post_id}/label`, `/api/review`,
`/api/quality` (issue 30).

Writes (a label, a skip) need `X-API-Key` when `API_KEYS` is set. `GET /api/review` records
the posts it hands out (the record is what makes a label on one a random label) but changes
no post, so it is a read to the API key and the rate limit. Mounted by `main` next to
`routes.router`, with the same rate limit.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Body, Depends, Path, Response, status

from sentiment_platform import store
from sentiment_platform.api.deps import ApiDep, SessionDep, SettingsDep, require_api_key
from sentiment_platform.api.label_schemas import QualityQuery, ReviewPage, ReviewQuery, ScopeQuery
from sentiment_platform.api.query import document, from_query
from sentiment_platform.api.schemas import problems
from sentiment_platform.domain import LabelView, PostLabel, utcnow
from sentiment_platform.errors import Conflict, NotFound
from sentiment_platform.services.retention import posts_cutoff
from sentiment_platform.services.trust.quality import Quality, compute_quality
from sentiment_platform.services.trust.review import draw_random, draw_uncertain
from sentiment_platform.store.labels import LabelWrite

router = APIRouter(prefix="/api", responses=problems(422, 429, 503), tags=["labels"])

PostIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]
GUARD = [Depends(require_api_key)]
ReviewQueryDep = Annotated[ReviewQuery, from_query(ReviewQuery)]
QualityQueryDep = Annotated[QualityQuery, from_query(QualityQuery)]


def _no_post(post_id: str) -> NotFound:
    return NotFound(f"no post {post_id!r}")


def _scope(query: ScopeQuery) -> store.LabelScope:
    return store.LabelScope(source=query.source, since=query.since, until=query.until)


@router.put(
    "/posts/{post_id}/label",
    response_model=LabelView,
    dependencies=GUARD,
    responses=problems(400, 401, 404, 413),
)
async def put_label(
    api: ApiDep, post_id: PostIdPath, body: Annotated[PostLabel, Body()]
) -> Response:
    """Set the post's label; the last write wins and `labelled_at` is when it was set. It
    is a random label when a random draw handed the post out (`GET /api/review`).

    Written with the PUTs that arrive with it, in one statement on a bare connection
    (api/label_writes.py): no session, one commit for them all, the answer encoded as is."""
    at = utcnow()
    if not await api.label_writes.put(api.reading, LabelWrite(post_id, body, at)):
        raise _no_post(post_id)
    label = LabelView(sentiment=body.sentiment, emotion=body.emotion, labelled_at=at)
    return Response(orjson.dumps(label.model_dump(mode="json")), media_type="application/json")


@router.delete(
    "/posts/{post_id}/label",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=GUARD,
    responses=problems(401, 404),
)
async def delete_label(api: ApiDep, post_id: PostIdPath) -> Response:
    """Remove the post's label (a post without one: nothing to do, still 204)."""
    async with api.reading() as connection:
        if not await store.clear_label(connection, post_id):
            raise _no_post(post_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/review", response_model=ReviewPage)
async def review_queue(
    session: SessionDep, settings: SettingsDep, query: ReviewQueryDep
) -> Response:
    """Analysed, unlabelled posts to label. `random`: a uniform random draw over the filter
    (its labels measure quality and feed estimates); `uncertain`: the least confident of
    the newest posts (they teach a model, never feed an estimate). Each post handed out is
    recorded."""
    scope = _scope(query)
    if query.strategy == "random":
        items = await draw_random(session, scope, query.limit, posts_cutoff(settings))
    else:
        items = await draw_uncertain(session, scope, query.limit)
    await session.commit()
    body = {"items": items, "strategy": query.strategy, "limit": query.limit}
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


@router.post(
    "/review/{post_id}/skip",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=GUARD,
    responses=problems(401, 404, 409),
)
async def skip_post(session: SessionDep, post_id: PostIdPath) -> Response:
    """Record that the reviewer skipped a post the queue handed out: it is not handed out
    again, and quality counts it (`skipped`), since people skip the hard posts."""
    outcome = await store.skip_post(session, post_id, utcnow())
    if outcome is store.Skip.NO_POST:
        raise _no_post(post_id)
    if outcome is store.Skip.NOT_DRAWN:
        raise Conflict(f"post {post_id!r} was not handed out by GET /api/review: nothing to skip")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/quality", response_model=Quality)
async def quality(api: ApiDep, query: QualityQueryDep) -> Quality:
    """The model's quality on the random labels of the posts created in the range."""
    async with api.reading() as connection:
        return await compute_quality(connection, _scope(query), query.model)


document(router)
