"""Request and response models of the REST API (the shapes CONTRACT.md promises)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from sentiment_platform.domain import (
    AlertItem,  # the one alert item type; re-exported as the /api/alerts item
    Emotion,
    IsoDateTime,
    PostView,
    Sentiment,
    as_utc,
    refuse_nul,
    utcnow,
)
from sentiment_platform.rule_spec import LanguageCode, RuleView
from sentiment_platform.services.reporting.aggregator import LAST_END, Bucket
from sentiment_platform.store.post_pages import MIN_TEXT, decode_cursor

MAX_PAGE = 100
MAX_OFFSET = 10_000_000  # deeper than any real reader pages; keeps SQL integers in range
MAX_ID = 2**63 - 1  # a BIGINT: larger ids are a 422, not a database error
THE_FIRST_MOMENT = datetime.min.replace(tzinfo=UTC)  # a range ending here holds nothing


class _Range(BaseModel):
    """What every query model shares: no NUL in any parameter (PostgreSQL cannot compare
    text with one), and `since`/`until`-style bounds made UTC-aware, their order checked."""

    _no_nul = field_validator("*", mode="before")(refuse_nul)

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return as_utc(value) if isinstance(value, datetime) else value


def _not_before(later: datetime | None, info: ValidationInfo, earlier: str) -> datetime | None:
    """The upper bound of a range may not come before its lower bound (validated first)."""
    start = info.data.get(earlier)
    if later is not None and start is not None and as_utc(later) < start:
        raise ValueError(f"{info.field_name} must not be before {earlier}")
    return later


class PostsFilterQuery(_Range):
    """The filters a page and an export share."""

    model_config = {"extra": "forbid"}

    sentiment_filter: Sentiment | None = None
    emotion: Emotion | None = None
    source: str | None = Field(None, min_length=1, max_length=64)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None
    # A trigram index needs three characters: shorter would scan every post.
    q: str | None = Field(None, min_length=MIN_TEXT, max_length=200)
    language: LanguageCode | None = None  # ISO 639-1 or und

    _until_after_since = field_validator("until")(
        lambda until, info: _not_before(until, info, "since")
    )


class PostsQuery(PostsFilterQuery):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    cursor: str | None = Field(None, max_length=200)  # a previous page's next_cursor

    @field_validator("cursor")
    @classmethod
    def _decodes(cls, cursor: str | None) -> str | None:
        if cursor is not None:
            decode_cursor(cursor)  # ValueError: a 422 naming `cursor`
        return cursor


class ExportQuery(PostsFilterQuery):
    format: Literal["csv", "jsonl"] = "csv"


class MetricsQuery(_Range):
    """Either `start`/`end` or the last `window_minutes` (default 60) up to `end` or now."""

    model_config = {"extra": "forbid"}

    start: IsoDateTime | None = None
    end: IsoDateTime | None = None
    window_minutes: int | None = Field(None, ge=1, le=60 * 24 * 366 * 100)
    bucket: Bucket | None = None
    source: str | None = Field(None, min_length=1, max_length=64)
    language: LanguageCode | None = None  # ISO 639-1 or und: that language's posts alone
    unique: bool = False  # each group of copies counted once (its first post)

    _relative: bool = PrivateAttr(False)

    _end_after_start = field_validator("end")(lambda end, info: _not_before(end, info, "start"))

    @model_validator(mode="after")
    def _resolve_range(self) -> MetricsQuery:
        """Fill in the range and bucket, so the aggregator gets exact bounds."""
        if self.start is not None and self.window_minutes is not None:
            raise ValueError("window_minutes: give either start/end or window_minutes, not both")
        self._relative = self.start is None and self.end is None
        self.end = self.end or utcnow()
        if self.end > LAST_END:
            raise ValueError(f"end: must not be after {LAST_END:%Y-%m-%dT%H:%M:%SZ}")
        if self.start is None:
            try:
                self.start = self.end - timedelta(minutes=self.window_minutes or 60)
            except OverflowError:
                # name what the caller sent: the window, or the end the default window ends at
                name = "window_minutes" if self.window_minutes is not None else "end"
                raise ValueError(f"{name}: the window reaches before year 1") from None
        if self.start > self.end:
            raise ValueError("start: start must not be after end (now, when end is not given)")
        if self.end == THE_FIRST_MOMENT:  # an empty range at the very start of the calendar
            raise ValueError("end: must be after 0001-01-01T00:00:00Z")
        self.bucket = (self.bucket or Bucket.for_range(self.start, self.end)).fitting(
            self.start, self.end
        )
        return self

    @property
    def relative_to_now(self) -> bool:
        """Whether the answer moves with the clock (no `start`, no `end`): cacheable."""
        return self._relative


class AlertsQuery(_Range):
    model_config = {"extra": "forbid"}

    limit: int = Field(50, ge=1, le=MAX_PAGE)
    since: IsoDateTime | None = None
    rule: int | None = Field(None, ge=0, le=MAX_ID)  # one rule's alerts; 0: the built-in rule


class PostsPage(BaseModel):
    items: list[PostView]
    total: int
    limit: int
    offset: int
    next_cursor: str | None = None  # pass as `cursor` for the next page; null on the last
    total_capped: bool = False  # true: a text search counted its matches up to a cap


class PostsAccepted(BaseModel):
    """What `POST /api/posts` took: `accepted` posts queued; `post_ids` every post of the
    request in its order (generated ones filled in); `duplicates` those not queued again."""

    accepted: int  # posts queued by this request
    post_ids: list[str]
    # already stored when the request came, or repeated within it (each once, in order)
    duplicates: list[str] = []
    # false: the store could not be asked in time, so `duplicates` holds only the repeats
    # within the request (the worker still stores each post_id once)
    duplicates_checked: bool = True


class AlertsPage(BaseModel):
    items: list[AlertItem]
    total: int


class Problem(BaseModel):
    """Every error answer: a sentence, or for 422 one entry per bad field."""

    detail: str | list[dict[str, Any]]


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes an endpoint can answer."""
    return {code: {"model": Problem} for code in codes}


Verdict = Literal["ok", "degraded", "down"]


class Health(BaseModel):
    status: Verdict
    database: str
    redis: str
    model: str
    backlog: int | None = None  # posts accepted, not yet acknowledged; None: bus unreachable
    tasks: dict[str, str] = {}  # the process's background loops: ok | down


@dataclass(frozen=True, slots=True)
class Checks:
    """What `Health` is made from (`api/probes.py`); here, not in the probes, because the
    API's parts (`api/deps.py`) keep the last clean one and the probes depend on those."""

    database: str
    redis: str
    model: str
    backlog: int | None = None
    tasks: dict[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> Verdict:
        """down: no store, or a background loop of this process is gone; degraded: the store
        answers but the bus or the model does not, or the backlog is full (writes get 503)."""
        if self.database != "ok" or "down" in self.tasks.values():
            return "down"
        if self.redis.startswith(("down", "full")) or self.model.startswith(
            ("down", "unavailable")
        ):
            return "degraded"
        return "ok"


# --- alert rules and an alert's detail -------------------------------------------------------


class RulesPage(BaseModel):
    """`GET /api/alert-rules`: the built-in rule (id 0) first, then the users' rules."""

    items: list[RuleView]
    total: int
    max_rules: int  # MAX_ALERT_RULES: how many user rules may exist


class DeliveryAttempt(BaseModel):
    at: datetime
    attempt: int
    status: int | None = None  # the HTTP status, when the receiver answered
    error: str | None = None


class DeliveryView(BaseModel):
    """One webhook notification of an alert and its attempts."""

    model_config = {"from_attributes": True}

    id: int
    event: str  # fire, renotify or resolve
    created_at: datetime
    done: bool
    delivered: bool
    attempt: int  # attempts so far
    status: int | None
    error: str | None
    next_attempt_at: datetime | None  # None once done
    attempts: list[DeliveryAttempt]


class TermView(BaseModel):
    term: str
    count: int  # the window's negative posts containing it
    background_count: int  # the rule's posts of the previous 24 h containing it
    score: float


class AlertDetail(AlertItem):
    """`GET /api/alerts/{id}`: the alert, its explanation and its webhook deliveries."""

    terms: list[TermView] = []
    examples: list[PostView] = []
    deliveries: list[DeliveryView] = []
