"""The platform's vocabulary: labels, the Post a producer sends, the Analysis a model gives.

Everything above this module (store, bus, services, both front doors) speaks these types,
so the API and the stream agree on what a valid post is without importing each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
)

MAX_CONTENT_CHARS = 10_000
MAX_BATCH_POSTS = 1_000
# How far ahead of this machine's clock a post's `created_at` may be: a producer's clock may
# run fast, but a post from next year would sit on top of "newest first" for a year.
MAX_CLOCK_SKEW = timedelta(days=1)
# The earliest `created_at` a post may carry. Nothing posted on a social network is older,
# and the calendar's edge is unsafe to store: asyncpg writes 0001-01-01T00:00:00Z as
# PostgreSQL's `-infinity`, which no datetime reads back. The same rule on both stores.
EARLIEST_CREATED_AT = datetime(1970, 1, 1, tzinfo=UTC)


class Sentiment(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NEUTRAL = "neutral"


class Task(StrEnum):
    """What a model is asked: the sentiment or the emotion of a post."""

    SENTIMENT = "sentiment"
    EMOTION = "emotion"


class Emotion(StrEnum):
    JOY = "joy"
    SADNESS = "sadness"
    ANGER = "anger"
    FEAR = "fear"
    SURPRISE = "surprise"
    NEUTRAL = "neutral"


# The one label map: any model's label name (lower-cased) -> our label.
SENTIMENT_ALIASES: dict[str, Sentiment] = {
    "positive": Sentiment.POSITIVE,
    "pos": Sentiment.POSITIVE,
    "negative": Sentiment.NEGATIVE,
    "neg": Sentiment.NEGATIVE,
    "neutral": Sentiment.NEUTRAL,
    "neu": Sentiment.NEUTRAL,
}
EMOTION_ALIASES: dict[str, Emotion] = {
    **{e.value: e for e in Emotion},
    "disgust": Emotion.ANGER,
    "annoyance": Emotion.ANGER,
    "happiness": Emotion.JOY,
    "love": Emotion.JOY,
    "optimism": Emotion.JOY,
    "sad": Emotion.SADNESS,
    "grief": Emotion.SADNESS,
    "pessimism": Emotion.SADNESS,
    "nervousness": Emotion.FEAR,
    "worry": Emotion.FEAR,
    "none": Emotion.NEUTRAL,
    "others": Emotion.NEUTRAL,
}


def to_sentiment(label: str) -> Sentiment:
    """Map a model's sentiment label onto ours; unknown labels are an error, not a guess."""
    try:
        return SENTIMENT_ALIASES[label.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown sentiment label {label!r}") from None


def to_emotion(label: str) -> Emotion:
    """Map a model's emotion label onto our six (disgust -> anger, ...)."""
    try:
        return EMOTION_ALIASES[label.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown emotion label {label!r}") from None


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to it.

    A moment whose UTC time falls outside years 1-9999 (`9999-12-31T23:59:59-05:00`) is a
    ValueError, the error every validator turns into a 4xx, not an OverflowError.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "must fall between 0001-01-01 and 9999-12-31 once converted to UTC"
        ) from None


def new_post_id() -> str:
    return uuid.uuid4().hex


def parse_iso_8601(value: object) -> datetime:
    """An aware UTC datetime from ISO-8601 text (or a datetime); ValueError for anything else.

    A bare number is not taken for a Unix time, and a date-time that leaves the calendar
    once converted to UTC is refused here, so every parser built on this one says why.
    """
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 date-time, e.g. 2026-01-15T10:00:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO-8601 date-time string")
    return as_utc(value)


def refuse_nul(value: Any) -> Any:
    """A field validator for whole models: PostgreSQL text cannot hold NUL (\\x00), so any
    text field carrying one is refused here, named by the field it is in."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL (\\x00) characters")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(parse_iso_8601)]
PostId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Source = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Author = Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)]


def _lower_text(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class PostLabel(BaseModel):
    """A person's label of a post: the body of `PUT /api/posts/{id}/label`, and what a post
    brought in already labelled carries (a bare string is its sentiment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sentiment: Annotated[Sentiment, BeforeValidator(_lower_text)]
    emotion: Annotated[Emotion | None, BeforeValidator(_lower_text)] = None


def _label_of(value: Any) -> Any:
    return {"sentiment": value} if isinstance(value, str) else value


class LabelView(BaseModel):
    """A stored label as post items show it: `labelled_at` is when it was last set."""

    sentiment: Sentiment
    emotion: Emotion | None = None
    labelled_at: datetime


class Post(BaseModel):
    """A social-media post as producers send it; the same shape travels on the bus."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    post_id: PostId = Field(default_factory=new_post_id)
    source: Source
    content: str = Field(max_length=MAX_CONTENT_CHARS)
    author: Author | None = None
    created_at: IsoDateTime = Field(default_factory=utcnow)
    # Already labelled (`ingest file`'s `label`): stored with the post, not a random label.
    label: Annotated[PostLabel | None, BeforeValidator(_label_of)] = None

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be empty")
        return value

    _no_nul = field_validator("*")(refuse_nul)

    @field_validator("created_at")
    @classmethod
    def _created_at_in_range(cls, value: datetime) -> datetime:
        """From 1970 to a day ahead of now: checked here, where every way in (the API, a
        file, a stream entry) validates a post, so no store holds a post outside it."""
        value = as_utc(value)
        if value < EARLIEST_CREATED_AT:
            raise ValueError("must not be before 1970-01-01T00:00:00Z")
        if value > utcnow() + MAX_CLOCK_SKEW:
            raise ValueError(
                f"must not be more than {MAX_CLOCK_SKEW.days} day ahead of the server's clock"
            )
        return value


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model says about one text, and which backend said it."""

    sentiment: Sentiment
    confidence: float
    emotion: Emotion
    emotion_confidence: float
    model: str


@dataclass(frozen=True, slots=True)
class Analysis:
    """A prediction bound to the post it describes, ready to store."""

    post_id: str
    sentiment: Sentiment
    confidence: float
    emotion: Emotion
    emotion_confidence: float
    model: str
    analyzed_at: datetime

    @classmethod
    def of(
        cls, post_id: str, prediction: Prediction, analyzed_at: datetime | None = None
    ) -> Analysis:
        return cls(
            post_id=post_id,
            sentiment=prediction.sentiment,
            confidence=prediction.confidence,
            emotion=prediction.emotion,
            emotion_confidence=prediction.emotion_confidence,
            model=prediction.model,
            analyzed_at=analyzed_at or utcnow(),
        )


UNSUPPORTED_LANGUAGE = "unsupported_language"  # a post's `analysis` when no model reads it


@dataclass(frozen=True, slots=True)
class PostMarks:
    """What the worker learns of a post besides its labels: its language, the first post of
    its copies' group, and `analysis` ("unsupported_language": no model reads it)."""

    language: str
    duplicate_of: str | None = None
    analysis: str | None = None


class PostView(BaseModel):
    """A stored post with its analysis (null until analysed): the REST item and the live event."""

    post_id: str
    source: str
    content: str
    author: str | None
    created_at: datetime
    sentiment: Sentiment | None = None
    confidence: float | None = None
    emotion: Emotion | None = None
    emotion_confidence: float | None = None
    model: str | None = None
    analyzed_at: datetime | None = None
    language: str | None = None  # ISO 639-1 or "und"; null: stored before detection (0010)
    duplicate_of: str | None = None
    analysis: Literal["unsupported_language"] | None = None
    label: LabelView | None = None  # last, as a page writes it (`store.post_pages`)

    @classmethod
    def of(
        cls, post: Any, analysis: Any | None, label: LabelView | None = None, marks: Any = None
    ) -> PostView:
        """Combine a post and its analysis: domain objects and ORM rows alike carry the fields
        (`marks`: a just stored post's PostMarks). A `Post` that came labelled was stored
        with its analysis, its label set then."""
        fields = {name: getattr(post, name) for name in _POST_FIELDS}
        held, names = (marks, _MARK_FIELDS) if marks is not None else (post, _ROW_MARKS)
        fields |= {n: getattr(held, got, None) for n, got in zip(_MARK_FIELDS, names, strict=True)}
        if analysis is not None:
            fields |= {name: getattr(analysis, name) for name in _ANALYSIS_FIELDS}
            brought = getattr(post, "label", None)
            if label is None and isinstance(brought, PostLabel):
                label = LabelView(**brought.model_dump(), labelled_at=analysis.analyzed_at)
        return cls(**fields, label=label)


_POST_FIELDS = ("post_id", "source", "content", "author", "created_at")
_MARK_FIELDS = ("language", "duplicate_of", "analysis")
_ROW_MARKS = ("language", "duplicate_of", "analysis_status")  # `analysis`: the relationship
_ANALYSIS_FIELDS = (
    "sentiment",
    "confidence",
    "emotion",
    "emotion_confidence",
    "model",
    "analyzed_at",
)


PostBatch = Annotated[list[Post], Field(min_length=1, max_length=MAX_BATCH_POSTS)]
# One post or a batch, told apart by shape so a bad post gets one error, not one per guess.
OneOrManyPosts = Annotated[
    Annotated[Post, Tag("post")] | Annotated[PostBatch, Tag("batch")],
    Discriminator(lambda value: "batch" if isinstance(value, list) else "post"),
]


class AlertItem(BaseModel):
    """One alert incident as `GET /api/alerts` lists it and the `alert` event carries it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    alert_type: str
    message: str
    severity: Literal["warning", "critical"] | str
    state: str
    details: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None = None
    # The rule that raised it; 0 / "built-in" for the global alert and old rows.
    rule_id: int = 0
    rule_name: str = "built-in"

    @field_validator("rule_id", "rule_name", mode="before")
    @classmethod
    def _builtin_when_none(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return 0 if info.field_name == "rule_id" else "built-in"
        return value
