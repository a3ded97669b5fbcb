"""The Dockerfile and compose file (no Docker engine runs here): what can be checked is."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.main import get_command

from sentiment_platform.cli import app as cli
from sentiment_platform.main import create_app

ROOT = Path(__file__).resolve().parents[2]
CONTRACT_VARIABLES = {
    "DATABASE_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_STREAM_NAME",
    "REDIS_CONSUMER_GROUP",
    "LOG_LEVEL",
    "LLM_PROVIDER",
    "LLM_API_KEY",
    "LLM_MODEL",
    "ALERT_THRESHOLD",
    "ALERT_WINDOW_MINUTES",
}


def cli_commands() -> set[str]:
    return set(get_command(cli).commands)  # type: ignore[attr-defined]


def test_compose_runs_the_platform_on_postgres_and_redis() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "init-db", "api", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7.0")
    for name in ("init-db", "api", "worker"):
        assert services[name]["command"][0] in cli_commands()
        assert set(services[name]["environment"]) >= CONTRACT_VARIABLES
    assert services["api"]["depends_on"]["init-db"]["condition"] == (
        "service_completed_successfully"
    )
    assert "ports" not in services["worker"]  # so `--scale worker=N` has nothing to clash on


def test_dockerfile_runs_only_what_the_package_has() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert re.search(r"^USER app$", dockerfile, re.MULTILINE)  # not root
    assert "torch==2.13.0" in dockerfile  # never an unpinned, multi-GB CUDA build
    assert 'ENTRYPOINT ["sentiment-platform"]' in dockerfile
    default = re.search(r'^CMD \["(\w[\w-]*)"\]', dockerfile, re.MULTILINE)
    assert default is not None and default.group(1) == "serve"
    assert {"serve", "worker", "init-db"} <= cli_commands()
    healthcheck = re.search(r"http://127\.0\.0\.1:8000(/\w+)", dockerfile)
    assert healthcheck is not None
    assert healthcheck.group(1) in create_app().openapi()["paths"]
