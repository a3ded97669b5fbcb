"""Alert rules: what a valid rule is, at the domain floor so the API, the store and
the services agree on it without importing each other.

A rule watches the posts that mention any of its `keywords` (case-insensitive, whole words
or phrases; surrounding double quotes are accepted and dropped; no keywords: every post),
optionally from one `source`, and fires when its `metric` over the last `window_minutes`
passes `threshold` over at least `min_posts` posts (with `unique`, each group of copies
counted once; with `language`, that language's posts alone):

- `negative_share`: the negative share of the rule's posts, threshold in (0, 1);
- `emotion_share`: the share of `emotion` among them, threshold in (0, 1);
- `volume`: the rule's post count over `threshold` × its average per window over the
  previous 24 hours, threshold in (1, 1000].

The built-in rule (the seed's `ALERT_THRESHOLD` / `ALERT_WINDOW_MINUTES` / `ALERT_MIN_POSTS`)
has no row: it is id 0 (`BUILTIN_RULE_ID`), read-only, named `built-in`. Alerts stored with
no rule (`rule_id` NULL, from before rules existed) belong to it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    computed_field,
    field_validator,
)

from sentiment_platform.domain import Emotion, refuse_nul

BUILTIN_RULE_ID = 0
BUILTIN_RULE_NAME = "built-in"
BUILTIN_ALERT_TYPE = "negative_spike"  # the global alert's type, as before rules
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 100
MAX_WINDOW_MINUTES = 24 * 60
MAX_VOLUME_FACTOR = 1_000.0
MAX_URL_CHARS = 2_000
URL_MASK = "…"  # what stands for a webhook URL's path and query when they are not shown

Metric = Literal["negative_share", "emotion_share", "volume"]

_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w")
_ISO_639_1 = re.compile(r"[a-z]{2}")
UNDETERMINED = "und"  # a post's language when detection could not tell (too short, unclear)


def language_code(value: str) -> str:
    """A `language=` filter (rules, metrics, pages, export): an ISO 639-1 code or `und`, as
    the worker stores a post's language; upper case is read as lower."""
    code = value.strip().lower()
    if code != UNDETERMINED and not _ISO_639_1.fullmatch(code):
        raise ValueError("must be an ISO 639-1 code (two letters: en, fr, de, ...) or und")
    return code


LanguageCode = Annotated[str, Field(min_length=2, max_length=3), AfterValidator(language_code)]


def rule_alert_type(rule_id: int) -> str:
    """The `alerts.alert_type` of a rule's incidents: one firing row per rule (0002's index)."""
    return BUILTIN_ALERT_TYPE if rule_id == BUILTIN_RULE_ID else f"rule:{rule_id}"


def normalise_keyword(keyword: str) -> str:
    """One keyword as it is stored and matched: quotes dropped, whitespace collapsed."""
    text = _SPACES.sub(" ", keyword).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = _SPACES.sub(" ", text[1:-1]).strip()
    return text


def check_webhook_url(value: str) -> str:
    """An absolute http(s) URL with a host; where it resolves is checked when it is used."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (user:password@); use webhook_secret")
    return value


def mask_webhook_url(url: str) -> str:
    """The URL as a caller without an API key sees it: scheme and host (and port) kept, the
    path, query and fragment replaced by `/…` — for Slack and many others the path is the
    credential. A masked URL masks to itself."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never credentials (refused on rules anyway)
    return f"{parts.scheme}://{host}/{URL_MASK}"


def is_masked_url(url: str) -> bool:
    """Whether `url` is a masked URL (what `mask_webhook_url` returns), not a real one."""
    return url == mask_webhook_url(url)


class RuleSpec(BaseModel):
    """A rule as `POST` / `PUT /api/alert-rules` take it. Every error names its field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    keywords: list[str] = Field(default_factory=list, max_length=MAX_KEYWORDS)
    source: str | None = Field(None, min_length=1, max_length=64)
    metric: Metric = "negative_share"
    emotion: Emotion | None = Field(None, validate_default=True)
    threshold: float = Field(validate_default=True)
    window_minutes: int = Field(5, ge=1, le=MAX_WINDOW_MINUTES)
    min_posts: int = Field(20, ge=1, le=10_000_000)
    webhook_url: str | None = Field(None, min_length=1, max_length=MAX_URL_CHARS)
    webhook_secret: SecretStr | None = Field(None, min_length=1, max_length=256)
    # Count each group of copies once (its first post): a copy flood alone fires nothing.
    # New rules default to true; a PUT without it keeps the rule's value.
    unique: bool = True
    language: LanguageCode | None = None  # the posts of one language alone; null: all

    _no_nul = field_validator("*", mode="before")(refuse_nul)

    @field_validator("keywords", mode="before")
    @classmethod
    def _keywords_no_nul(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [refuse_nul(item) for item in value]
        return value

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, keywords: list[str]) -> list[str]:
        kept: dict[str, str] = {}
        for position, raw in enumerate(keywords):
            if len(raw) > MAX_KEYWORD_CHARS:
                raise ValueError(f"keyword {position} is over {MAX_KEYWORD_CHARS} characters")
            keyword = normalise_keyword(raw)
            if not _WORD.search(keyword):
                raise ValueError(f"keyword {position} has no letter or digit")
            kept.setdefault(keyword.lower(), keyword)  # one of each, case-insensitively
        return list(kept.values())

    @field_validator("emotion")
    @classmethod
    def _emotion(cls, emotion: Emotion | None, info: ValidationInfo) -> Emotion | None:
        metric = info.data.get("metric")
        if metric == "emotion_share" and emotion is None:
            raise ValueError("required when metric is emotion_share (one of the six emotions)")
        if metric not in (None, "emotion_share") and emotion is not None:
            raise ValueError("only applies when metric is emotion_share")
        return emotion

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, threshold: float, info: ValidationInfo) -> float:
        metric = info.data.get("metric")
        if metric == "volume":
            if not 1.0 < threshold <= MAX_VOLUME_FACTOR:
                raise ValueError(
                    "for volume: a factor over the 24 h average, above 1 and at most "
                    f"{MAX_VOLUME_FACTOR:g}"
                )
        elif metric is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"for {metric}: a share strictly between 0 and 1")
        return threshold

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_webhook_url(value)


class RuleView(BaseModel):
    """A rule as the API shows it: never its secret, only whether it has one; its webhook URL
    whole only to a caller with an API key (`masked`)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    keywords: list[str]
    source: str | None
    metric: Metric
    emotion: Emotion | None
    threshold: float
    window_minutes: int
    min_posts: int
    webhook_url: str | None
    has_secret: bool
    unique: bool = False  # rules from before 0010 (and the built-in rule) count every copy
    language: str | None = None
    builtin: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_webhook(self) -> bool:
        return self.webhook_url is not None

    @property
    def alert_type(self) -> str:
        return rule_alert_type(self.id)

    def masked(self) -> RuleView:
        """The rule with its webhook URL's path and query masked (`mask_webhook_url`)."""
        if self.webhook_url is None:
            return self
        return self.model_copy(update={"webhook_url": mask_webhook_url(self.webhook_url)})
