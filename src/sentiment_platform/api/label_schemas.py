"""Request and response models of labels, the review queue and quality (issue 30)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from sentiment_platform.api.schemas import MAX_PAGE, _not_before, _Range
from sentiment_platform.domain import IsoDateTime, PostView


class ScopeQuery(_Range):
    """The posts a review draw or a quality read is about: a source, a `created_at` range."""

    model_config = {"extra": "forbid"}

    source: str | None = Field(None, min_length=1, max_length=64)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None

    _until_after_since = field_validator("until")(
        lambda until, info: _not_before(until, info, "since")
    )


class ReviewQuery(ScopeQuery):
    strategy: Literal["random", "uncertain"] = "random"
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class QualityQuery(ScopeQuery):
    # whose predictions to compare with (default: the newest model among the random labels)
    model: str | None = Field(None, min_length=1, max_length=128)


class ReviewPage(BaseModel):
    """`GET /api/review`: posts to label, in the order drawn; fewer than `limit` when the
    filter has no more (or, for a random draw, a narrow filter over a large table)."""

    items: list[PostView]
    strategy: Literal["random", "uncertain"]
    limit: int
