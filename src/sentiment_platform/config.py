"""Every setting the platform reads, in one place (environment or `.env`).

Nothing else in the code reads the environment: modules take a `Settings` instance.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "your-api-key", "xxx", "secret", ""})

DEFAULT_RECOVERY_GAP = 0.05  # a firing alert resolves this far below ALERT_THRESHOLD

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, hide_input_in_errors=True
    )

    # --- store ---
    database_url: str = "sqlite+aiosqlite:///./sentiment.db"
    db_pool_size: int = Field(10, ge=1)
    db_statement_timeout_ms: int = Field(5_000, ge=100)

    # --- reads ---
    metrics_cache_s: float = Field(1.0, ge=0.0, le=60.0)  # answers relative to now; 0: off
    min_estimate_labels: int = Field(200, ge=2)  # random labels a metrics interval needs
    export_max_rows: int = Field(1_000_000, ge=1)  # an export without since/until: at most
    retention_days: int | None = Field(None, ge=1)  # unset: keep every post
    rollup_retention_days: int | None = Field(None, ge=1)  # unset: keep every rollup
    retention_batch: int = Field(5_000, ge=100, le=100_000)  # posts deleted per statement
    retention_interval_s: float = Field(60.0, gt=0.0)  # how often the retention task runs

    # --- bus ---
    redis_host: str | None = None
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_db: int = Field(0, ge=0)
    redis_password: SecretStr | None = None
    redis_stream_name: str = "social_posts"
    redis_consumer_group: str = "sentiment_workers"
    redis_stream_maxlen: int = Field(1_000_000, ge=1_000)  # caps only `<stream>:dead` now
    stream_max_backlog: int = Field(1_000_000, ge=1)  # unacked entries before producers get 503
    embedded_queue_bytes: int = Field(256 * 1024 * 1024, ge=1_024)  # in-process bus bound
    embedded_queue_path: str | None = None  # the in-process bus's journal; None: beside SQLite
    events_channel: str = "sentiment_events"
    worker_batch_size: int = Field(500, ge=1, le=10_000)  # XREADGROUP COUNT: one model call
    worker_block_ms: int = Field(1_000, ge=10, le=5_000)  # XREADGROUP BLOCK
    claim_idle_ms: int = Field(60_000, ge=100)  # janitor takes entries idle this long
    max_deliveries: int = Field(5, ge=1)  # then the entry goes to `<stream>:dead`
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)  # a worker's /metrics

    # --- API ---
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    serve_demo: bool = False  # `serve --demo`: feed generated posts in-process
    embedded_worker: bool = True  # embedded default: run the model + worker in the API process
    log_format: Literal["console", "json"] = "console"  # json: one object a line, for shippers

    # --- security ---
    api_keys: Annotated[list[SecretStr], NoDecode] = []  # unset: write endpoints are open
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1_024)  # larger request bodies get 413
    rate_limit_per_minute: int = Field(1_200, ge=0)  # per API key or client IP; 0 disables
    cors_origins: CommaList = []  # browser origins allowed on the API and /ws; "*": any
    allowed_hosts: CommaList = []  # Host headers served; unset: loopback names and API_HOST
    forwarded_allow_ips: CommaList = []  # proxies whose X-Forwarded-For is believed; unset: none

    # --- analyzer ---
    analyzer_backends: CommaList = ["transformers", "embedded", "llm"]
    sentiment_model: str = "cardiffnlp/twitter-roberta-base-sentiment-latest"
    emotion_model: str = "j-hartmann/emotion-english-distilroberta-base"
    model_device: Literal["cpu", "cuda"] = "cpu"
    llm_escalate_below: float | None = Field(None, ge=0.0, le=1.0)
    model_local_files_only: bool = True  # False lets the transformers backend download
    model_batch_size: int = Field(32, ge=1)
    embedded_threads: int | None = Field(None, ge=1)  # chunks run at once; None: all cores
    models_dir: str | None = None  # imported models; None: `models/` beside the SQLite file
    dedup_window_hours: float = Field(24.0, gt=0.0, le=720.0)  # copies found this far apart
    # A post no model reads: left without sentiment ("skip"), or read by the English model.
    unsupported_languages: Literal["skip", "english"] = "skip"

    # --- LLM fallback ---
    llm_provider: Literal["groq", "openai", "anthropic"] | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_timeout_s: float = Field(10.0, gt=0)
    llm_max_attempts: int = Field(3, ge=1)
    llm_breaker_failures: int = Field(5, ge=1)
    llm_breaker_cooldown_s: float = Field(30.0, gt=0)

    # --- alerting ---
    alert_threshold: float = Field(0.4, gt=0.0, lt=1.0)
    alert_window_minutes: int = Field(5, ge=1)
    alert_min_posts: int = Field(20, ge=1)  # fewer posts in the window: no verdict
    alert_hold_seconds: float = Field(0.0, ge=0.0)  # above threshold this long before firing
    alert_recovery_threshold: float | None = Field(None, gt=0.0, lt=1.0)  # None: threshold - 0.05
    alert_repeat_minutes: float = Field(15.0, gt=0.0)  # re-notify a firing alert at most this often
    alert_critical_margin: float = Field(0.2, gt=0.0)  # share >= threshold + margin: critical
    alert_check_interval_s: float = Field(5.0, gt=0.0)
    alert_on: Literal["counted", "estimated"] = "counted"  # estimated: model confusion undone

    # --- alert rules and notifications ---
    max_alert_rules: int = Field(100, ge=1, le=10_000)  # user rules; the built-in one is extra
    alert_webhook_url: str | None = None  # the built-in rule's notifications
    alert_webhook_secret: SecretStr | None = None  # signs them (X-Signature-256)
    webhook_allow_private: bool = False  # allow URLs resolving to loopback/private addresses
    webhook_timeout_s: float = Field(5.0, gt=0.0)
    webhook_backoff_base_s: float = Field(2.0, gt=0.0)  # first retry; doubles, with jitter
    webhook_backoff_cap_s: float = Field(300.0, gt=0.0)
    webhook_retry_for_s: float = Field(3_600.0, gt=0.0)  # then a delivery is given up

    @field_validator("alert_webhook_url", mode="before")
    @classmethod
    def _blank_webhook_is_none(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    # --- websocket ---
    ws_queue_size: int = Field(512, ge=1)  # a client lagging by more is dropped (aborted)
    ws_send_timeout_s: float = Field(10.0, ge=0.1)  # a socket taking nothing this long: aborted
    max_ws_clients: int = Field(2_000, ge=1)  # per API process; one more is closed with 1013
    ws_metrics_interval_s: float = Field(2.0, gt=0.0)
    ws_flush_ms: int = Field(50, ge=1, le=1_000)  # analysed posts are fanned out in batches

    _split = field_validator(
        "analyzer_backends",
        "api_keys",
        "cors_origins",
        "allowed_hosts",
        "forwarded_allow_ips",
        mode="before",
    )(_split_commas)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        """Addresses, networks or `*` only: uvicorn takes anything else as a name that an
        address never matches, so a typo would silently trust nobody."""
        for item in value:
            try:
                if "/" in item:
                    ipaddress.ip_network(item, strict=False)
                elif item != "*":
                    ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(
                    f"FORWARDED_ALLOW_IPS: {item!r} is not an IP address, a network "
                    "(10.0.0.0/8) or *"
                ) from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("llm_provider", mode="before")
    @classmethod
    def _blank_provider_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        named = [("LLM_API_KEY", self.llm_api_key), ("REDIS_PASSWORD", self.redis_password)]
        named.append(("ALERT_WEBHOOK_SECRET", self.alert_webhook_secret))
        named += [("API_KEYS", key) for key in self.api_keys]
        for name, secret in named:
            if secret is not None and secret.get_secret_value().strip().lower() in (
                PLACEHOLDER_SECRETS
            ):
                raise ValueError(f"{name} is a placeholder; set a real value or unset it")
        return self

    @model_validator(mode="after")
    def _pairs_agree(self) -> Settings:
        """Settings that only make sense together: a bad pair stops the start, naming both."""
        recovery = self.alert_recovery_threshold
        if recovery is not None and recovery >= self.alert_threshold:
            raise ValueError(
                f"ALERT_RECOVERY_THRESHOLD ({recovery}) must be below "
                f"ALERT_THRESHOLD ({self.alert_threshold})"
            )
        rollups, posts = self.rollup_retention_days, self.retention_days
        if rollups is not None and (posts is None or rollups < posts):
            kept = "forever (unset)" if posts is None else f"{posts} days"
            raise ValueError(
                f"ROLLUP_RETENTION_DAYS ({rollups}) must be at least RETENTION_DAYS ({kept}): "
                "page totals and metrics are counted from the rollups, so they must outlive "
                "the posts"
            )
        return self

    @property
    def effective_alert_recovery_threshold(self) -> float:
        """ALERT_RECOVERY_THRESHOLD, or by default threshold - min(0.05, threshold / 2).

        A threshold under the default gap keeps a proportional band instead.
        """
        if self.alert_recovery_threshold is not None:
            return self.alert_recovery_threshold
        gap = min(DEFAULT_RECOVERY_GAP, self.alert_threshold / 2)
        return round(self.alert_threshold - gap, 6)

    def environment(self) -> dict[str, str]:
        """These settings as environment variables, for a child process (a worker) to read."""
        variables = {}
        for name, value in self:
            if value is None:
                continue
            items = value if isinstance(value, list) else [value]
            variables[name.upper()] = ",".join(
                item.get_secret_value() if isinstance(item, SecretStr) else str(item)
                for item in items
            )
        return variables

    @property
    def async_database_url(self) -> str:
        """The URL SQLAlchemy's async engine needs; the seed's plain forms are mapped."""
        url = self.database_url
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.async_database_url.startswith("sqlite")

    @property
    def uses_redis(self) -> bool:
        return bool(self.redis_host)

    @property
    def models_path(self) -> Path:
        """Where imported models live: MODELS_DIR, else `models/` beside the SQLite store
        (`./sentiment.db` -> `./models`), else (PostgreSQL, an in-memory SQLite) `./models`.

        Every process that serves a model reads it from here, so in Redis mode it must be a
        path that every worker sees (a shared volume).
        """
        if self.models_dir:
            return Path(self.models_dir)
        if self.is_sqlite:
            database = make_url(self.async_database_url).database
            if database and database != ":memory:" and not database.startswith("file:"):
                return Path(database).parent / "models"
        return Path("models")


@lru_cache
def get_settings() -> Settings:
    return Settings()
