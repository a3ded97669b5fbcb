"""Settings: the seed's URL forms, comma lists, and secrets that never leak."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sentiment_platform.config import Settings


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:pw@db:5432/posts", "postgresql+asyncpg://u:pw@db:5432/posts"),
        ("postgres://u@db/posts", "postgresql+asyncpg://u@db/posts"),
        ("postgresql+asyncpg://u@db/posts", "postgresql+asyncpg://u@db/posts"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
    ],
)
def test_database_url_forms(given: str, used: str) -> None:
    assert Settings(database_url=given).async_database_url == used


def test_defaults_are_the_embedded_platform() -> None:
    settings = Settings(_env_file=None)
    assert settings.is_sqlite and not settings.uses_redis
    assert settings.async_database_url == "sqlite+aiosqlite:///./sentiment.db"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert (settings.alert_threshold, settings.alert_window_minutes) == (0.4, 5)
    assert (settings.redis_stream_name, settings.redis_consumer_group) == (
        "social_posts",
        "sentiment_workers",
    )


def test_environment_and_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("ANALYZER_BACKENDS", "embedded, llm")
    monkeypatch.setenv("log_level", "debug")
    settings = Settings(_env_file=None)
    assert settings.uses_redis and settings.analyzer_backends == ["embedded", "llm"]
    assert settings.log_level == "DEBUG"


def test_llm_key_is_masked_everywhere() -> None:
    settings = Settings(llm_provider="groq", llm_api_key="gsk-real-secret-123")
    assert "gsk-real-secret-123" not in repr(settings)
    assert "gsk-real-secret-123" not in str(settings.model_dump())
    assert "gsk-real-secret-123" not in settings.model_dump_json()
    assert settings.llm_api_key is not None
    assert settings.llm_api_key.get_secret_value() == "gsk-real-secret-123"


@pytest.mark.parametrize("placeholder", ["changethis", "CHANGEME", "  "])
def test_placeholder_secrets_are_refused(placeholder: str) -> None:
    with pytest.raises(ValidationError, match="LLM_API_KEY is a placeholder"):
        Settings(llm_api_key=placeholder)


def test_out_of_range_values_name_the_variable() -> None:
    with pytest.raises(ValidationError, match="alert_threshold"):
        Settings(alert_threshold=1.5)


def test_environment_hands_the_same_settings_to_a_child_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = Settings(
        _env_file=None,
        redis_host="cache.internal",
        analyzer_backends="embedded,llm",
        api_keys="key-one-0123456789,key-two-0123456789",
        llm_provider="groq",
        llm_api_key="gsk-real-secret-123",
        alert_threshold=0.35,
    )
    for name, value in original.environment().items():
        monkeypatch.setenv(name, value)
    child = Settings(_env_file=None)
    assert child.model_dump() == original.model_dump()
    assert child.llm_api_key is not None
    assert child.llm_api_key.get_secret_value() == "gsk-real-secret-123"
    assert [key.get_secret_value() for key in child.api_keys] == [
        "key-one-0123456789",
        "key-two-0123456789",
    ]


@pytest.mark.parametrize("recovery", [0.4, 0.5])
def test_a_recovery_threshold_not_below_the_threshold_fails_naming_both(recovery: float) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None, alert_threshold=0.4, alert_recovery_threshold=recovery)
    message = str(raised.value)
    assert "ALERT_RECOVERY_THRESHOLD" in message and "ALERT_THRESHOLD" in message


@pytest.mark.parametrize(
    ("threshold", "recovery", "effective"),
    [
        (0.4, None, 0.35),  # the default gap, 0.05
        (0.04, None, 0.02),  # under the gap: half the threshold
        (0.4, 0.2, 0.2),  # as configured
    ],
)
def test_effective_recovery_threshold(
    threshold: float, recovery: float | None, effective: float
) -> None:
    settings = Settings(
        _env_file=None, alert_threshold=threshold, alert_recovery_threshold=recovery
    )
    assert settings.effective_alert_recovery_threshold == pytest.approx(effective)


@pytest.mark.parametrize(("posts", "rollups"), [(None, 30), (90, 30)])
def test_rollups_kept_shorter_than_posts_fail_naming_both(posts: int | None, rollups: int) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, retention_days=posts, rollup_retention_days=rollups)
    message = str(caught.value)
    assert "ROLLUP_RETENTION_DAYS" in message and "RETENTION_DAYS (" in message


def test_rollups_may_outlive_posts() -> None:
    settings = Settings(_env_file=None, retention_days=30, rollup_retention_days=400)
    assert settings.rollup_retention_days == 400


def test_forwarded_allow_ips_takes_addresses_networks_or_a_star() -> None:
    def trusted(value: str) -> list[str]:
        return Settings(_env_file=None, forwarded_allow_ips=value).forwarded_allow_ips  # type: ignore[call-arg]

    assert Settings(_env_file=None).forwarded_allow_ips == []  # type: ignore[call-arg]
    assert trusted("10.0.0.5, 10.1.0.0/16,::1") == ["10.0.0.5", "10.1.0.0/16", "::1"]
    assert trusted("*") == ["*"]
    with pytest.raises(ValueError, match="FORWARDED_ALLOW_IPS: 'proxy.local'"):
        trusted("10.0.0.5,proxy.local")


@pytest.mark.parametrize(
    ("database_url", "models_dir", "expected"),
    [
        ("sqlite+aiosqlite:///./sentiment.db", None, Path("models")),
        ("sqlite:////var/lib/sentiment/posts.db", None, Path("/var/lib/sentiment/models")),
        ("sqlite+aiosqlite:///data/x.db", None, Path("data/models")),
        ("sqlite+aiosqlite:///:memory:", None, Path("models")),
        ("postgresql://u@db/posts", None, Path("models")),
        ("postgresql://u@db/posts", "/shared/models", Path("/shared/models")),
        ("sqlite:///./x.db", "elsewhere", Path("elsewhere")),
    ],
)
def test_models_dir_defaults_beside_the_sqlite_store(
    database_url: str, models_dir: str | None, expected: Path
) -> None:
    settings = Settings(_env_file=None, database_url=database_url, models_dir=models_dir)
    assert settings.models_path == expected
