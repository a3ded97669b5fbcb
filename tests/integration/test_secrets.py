"""A full run of `sentiment-platform serve` at DEBUG never writes a secret to its logs.

The LLM provider is a loopback server speaking the OpenAI chat API (the real providers are
unreachable here); everything else is the real thing: the console script, uvicorn, HTTP.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_llm import openai_chat
from tests.support.servers import serve_process

LLM_KEY = "sk-live-4f1c9a7e2b-never-log-me"
API_KEYS = ("write-key-alpha-7d3e9b1c", "write-key-beta-2a8f6c4e")
SCRIPT = Path(sys.executable).with_name("sentiment-platform")


@pytest.fixture
def provider() -> Iterator[str]:
    with openai_chat() as url:
        yield url


def test_no_secret_reaches_the_logs_of_a_full_run(provider: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "ANALYZER_BACKENDS": "llm",
        "LLM_PROVIDER": "openai",
        "LLM_API_KEY": LLM_KEY,
        "LLM_BASE_URL": provider,
        "API_KEYS": ",".join(API_KEYS),
    }
    with serve_process(env, tmp_path) as base:
        posts = [{"source": "test", "content": f"I hate waiting #{i}"} for i in range(5)]
        for key in API_KEYS:
            answer = httpx.post(f"{base}/api/posts", json=posts, headers={"X-API-Key": key})
            assert answer.status_code == 202
        guessed = httpx.post(f"{base}/api/posts", json=posts, headers={"X-API-Key": LLM_KEY})
        assert guessed.status_code == 401

        deadline = time.monotonic() + 30
        while True:
            page = httpx.get(f"{base}/api/posts", params={"limit": 100}).json()
            if page["total"] == 10 and all(item["model"] for item in page["items"]):
                break
            assert time.monotonic() < deadline, page
            time.sleep(0.2)
        assert {item["model"] for item in page["items"]} == {"llm/openai/gpt-4o-mini"}
        assert httpx.get(f"{base}/api/health").json()["model"].startswith("ok")
        metrics = httpx.get(f"{base}/metrics").text
        model = 'model="llm/openai/gpt-4o-mini"'
        assert f"sentiment_posts_analyzed_total{{{model}}} 10.0" in metrics
        assert 'sentiment_analyzer_batch_seconds_count{backend="llm/openai/gpt-4o-mini"}' in (
            metrics
        )

    output = (tmp_path / "serve.log").read_text()
    # DEBUG really did log the traffic (httpx's own request lines are held at WARNING: they
    # would carry webhook URLs).
    assert '"level": "DEBUG"' in output and "batch done" in output
    for secret in (LLM_KEY, *API_KEYS):
        assert secret not in output
