"""The LLM backend against a real loopback HTTP server that speaks the providers' APIs."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Sentiment
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.circuit_breaker import (
    CircuitBreaker,
    CircuitOpen,
    ProviderOutage,
)
from sentiment_platform.services.analysis.llm import (
    ANTHROPIC_VERSION,
    PROVIDERS,
    SYSTEM_PROMPT,
    LLMBackend,
    LLMError,
    RateLimited,
    load_llm_backend,
    parse_answer,
)

KEY = "sk-test-9f8e7d6c5b4a-do-not-log"
TEXTS = ["I love it", 'he said "never again"\nworst day', "the bus is at 9"]
ITEMS = [
    {"sentiment": "positive", "confidence": 0.93, "emotion": "joy", "emotion_confidence": 0.8},
    {"sentiment": "negative", "confidence": 0.88, "emotion": "anger", "emotion_confidence": 0.7},
    {"sentiment": "neutral", "confidence": 0.75, "emotion": "neutral", "emotion_confidence": 0.9},
]
# Where each provider's API lives under its base URL, as the real services lay it out.
PREFIX = {"groq": "/openai/v1", "openai": "/v1", "anthropic": ""}
PATH = {
    "groq": "/openai/v1/chat/completions",
    "openai": "/v1/chat/completions",
    "anthropic": "/v1/messages",
}


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    echo_credentials: bool = False  # a careless provider error that quotes the key back


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeProvider:
    """Answers POSTs with scripted replies, in order, and records every request."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                provider.seen.append(Seen(self.path, headers, json.loads(raw)))
                reply = provider.replies.popleft() if provider.replies else Reply(599, "unscripted")
                time.sleep(reply.delay_s)
                body = reply.body
                if reply.echo_credentials:
                    key = headers.get("authorization") or headers.get("x-api-key")
                    body = {"error": f"bad key {key}"}
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: that is the point of the hang test

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    yield fake
    fake.close()


@pytest.fixture
def fake(server: FakeProvider) -> FakeProvider:
    server.replies.clear()
    server.seen.clear()
    return server


def chat(content: str) -> Reply:
    return Reply(
        body={"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    )


def anthropic(content: str) -> Reply:
    return Reply(body={"type": "message", "content": [{"type": "text", "text": content}]})


class Sleeps(list[float]):
    """The injected sleep: records the waits instead of spending them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def backend(fake: FakeProvider, provider: str = "openai", **kwargs: Any) -> LLMBackend:
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("rng", lambda: 0.5)
    kwargs.setdefault("timeout_s", 2.0)
    return LLMBackend(provider, SecretStr(KEY), base_url=fake.url + PREFIX[provider], **kwargs)


@pytest.mark.parametrize("provider", ["groq", "openai", "anthropic"])
def test_good_answer_from_each_provider(fake: FakeProvider, provider: str) -> None:
    settings = Settings(
        _env_file=None,
        llm_provider=provider,
        llm_api_key=KEY,
        llm_base_url=fake.url + PREFIX[provider],
    )
    llm = load_llm_backend(settings)
    fake.script((anthropic if provider == "anthropic" else chat)(json.dumps(ITEMS)))

    predictions = llm.predict(TEXTS)

    model = PROVIDERS[provider].default_model
    assert llm.name == f"llm/{provider}/{model}"
    assert [(p.sentiment, p.emotion) for p in predictions] == [
        (Sentiment.POSITIVE, Emotion.JOY),
        (Sentiment.NEGATIVE, Emotion.ANGER),
        (Sentiment.NEUTRAL, Emotion.NEUTRAL),
    ]
    assert [p.confidence for p in predictions] == [0.93, 0.88, 0.75]
    assert {p.model for p in predictions} == {llm.name}
    (seen,) = fake.seen
    assert seen.path == PATH[provider]
    assert seen.body["model"] == model
    if provider == "anthropic":
        assert seen.headers["x-api-key"] == KEY
        assert seen.headers["anthropic-version"] == ANTHROPIC_VERSION
        assert seen.body["system"] == SYSTEM_PROMPT
        assert seen.body["max_tokens"] > 0
        prompt = seen.body["messages"][0]["content"]
    else:
        assert seen.headers["authorization"] == f"Bearer {KEY}"
        assert seen.body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        prompt = seen.body["messages"][1]["content"]
    # Each post numbered and JSON-quoted, so its newline and quotes stay inside it.
    for i, text in enumerate(TEXTS, 1):
        assert f"{i}. {json.dumps(text)}" in prompt
    llm.close()


def test_llm_model_setting_overrides_the_default(fake: FakeProvider) -> None:
    settings = Settings(
        _env_file=None,
        llm_provider="groq",
        llm_api_key=KEY,
        llm_model="mixtral-8x7b",
        llm_base_url=fake.url + PREFIX["groq"],
    )
    fake.script(chat(json.dumps(ITEMS[:1])))
    llm = load_llm_backend(settings)
    assert llm.predict(["hi"])[0].model == "llm/groq/mixtral-8x7b"
    assert fake.seen[0].body["model"] == "mixtral-8x7b"


def test_unavailable_without_provider_or_key() -> None:
    with pytest.raises(BackendUnavailable, match="LLM_PROVIDER is not set"):
        load_llm_backend(Settings(_env_file=None))
    with pytest.raises(BackendUnavailable, match="LLM_API_KEY is not set"):
        load_llm_backend(Settings(_env_file=None, llm_provider="openai"))


def test_an_empty_batch_costs_no_request(fake: FakeProvider) -> None:
    assert backend(fake).predict([]) == []
    assert fake.seen == []


def test_a_fenced_answer_is_accepted() -> None:
    answer = "```json\n" + json.dumps(ITEMS) + "\n```"
    assert len(parse_answer(answer, 3, "llm/x")) == 3


def _with(index: int, **changes: Any) -> str:
    items = [dict(item) for item in ITEMS]
    items[index].update(changes)
    return json.dumps(items)


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("Sure! Here you go: positive, negative, neutral", "not JSON"),
        (json.dumps({"results": ITEMS}), "not an array"),
        (json.dumps(ITEMS[:2]), "2 items for 3 posts"),
        (json.dumps([*ITEMS, ITEMS[0]]), "4 items for 3 posts"),
        (_with(1, sentiment="mixed"), "unknown sentiment 'mixed'"),
        (_with(1, sentiment="Negative"), "unknown sentiment"),
        (_with(2, emotion="disgust"), "unknown emotion 'disgust'"),
        (_with(0, confidence=1.5), "confidence must be a number in"),
        (_with(0, confidence="0.9"), "confidence must be a number in"),
        (_with(0, emotion_confidence=True), "emotion_confidence must be a number in"),
        (_with(2, text="extra field"), "item 3 is not an object"),
        (json.dumps([ITEMS[0], "positive", ITEMS[2]]), "item 2 is not an object"),
    ],
)
def test_answers_are_parsed_strictly(content: str, complaint: str) -> None:
    with pytest.raises(LLMError, match=complaint):
        parse_answer(content, 3, "llm/x")


def test_malformed_answer_fails_the_batch_without_retrying(fake: FakeProvider) -> None:
    sleeps = Sleeps()
    llm = backend(fake, sleep=sleeps)
    fake.script(chat("I think the first one is positive"))
    with pytest.raises(LLMError, match="not JSON"):
        llm.predict(TEXTS)
    assert len(fake.seen) == 1
    assert sleeps == []


def test_an_unexpected_envelope_is_an_error(fake: FakeProvider) -> None:
    fake.script(Reply(body={"object": "error", "message": "overloaded"}))
    with pytest.raises(LLMError, match="unexpected response shape"):
        backend(fake).predict(TEXTS)


def test_429_waits_as_long_as_retry_after_says(fake: FakeProvider) -> None:
    sleeps = Sleeps()
    fake.script(Reply(429, {"error": "slow down"}, {"Retry-After": "2"}), chat(json.dumps(ITEMS)))
    assert len(backend(fake, sleep=sleeps).predict(TEXTS)) == 3
    assert sleeps == [2.0]
    assert len(fake.seen) == 2


def test_a_rate_limit_outlasting_the_retries_is_an_outage(fake: FakeProvider) -> None:
    fake.script(*[Reply(429, {"error": "slow down"}, {"Retry-After": "1"})] * 3)
    with pytest.raises(RateLimited, match="HTTP 429") as limited:
        backend(fake, max_attempts=3).predict(TEXTS)
    assert isinstance(limited.value, ProviderOutage) and isinstance(limited.value, LLMError)
    fake.script(Reply(429, {"error": "slow down"}, {"Retry-After": "3600"}))
    with pytest.raises(RateLimited, match="Retry-After 3600s is too long"):
        backend(fake).predict(TEXTS)


def test_503_with_an_unreasonable_retry_after_gives_up_at_once(fake: FakeProvider) -> None:
    sleeps = Sleeps()
    fake.script(Reply(503, {"error": "maintenance"}, {"Retry-After": "3600"}))
    with pytest.raises(LLMError, match="Retry-After 3600s is too long"):
        backend(fake, sleep=sleeps).predict(TEXTS)
    assert sleeps == []
    assert len(fake.seen) == 1


def test_5xx_then_success_backs_off_with_full_jitter(fake: FakeProvider) -> None:
    sleeps = Sleeps()
    fake.script(Reply(500, "boom"), Reply(502, "bad gateway"), chat(json.dumps(ITEMS)))
    llm = backend(fake, sleep=sleeps, max_attempts=3, rng=lambda: 0.5)
    assert len(llm.predict(TEXTS)) == 3
    # Full jitter: rng() * min(cap, 0.5 * 2**(attempt-1)), with rng() pinned at 0.5.
    assert sleeps == [0.25, 0.5]
    assert len(fake.seen) == 3


def test_attempts_are_bounded(fake: FakeProvider) -> None:
    sleeps = Sleeps()
    fake.script(*[Reply(500, "still broken")] * 5)
    with pytest.raises(LLMError, match="HTTP 500: still broken"):
        backend(fake, sleep=sleeps, max_attempts=3, rng=lambda: 1.0).predict(TEXTS)
    assert len(fake.seen) == 3
    assert sleeps == [0.5, 1.0]


def test_a_client_error_is_not_retried(fake: FakeProvider) -> None:
    fake.script(Reply(400, {"error": "bad model"}))
    with pytest.raises(LLMError, match="HTTP 400"):
        backend(fake).predict(TEXTS)
    assert len(fake.seen) == 1


def test_a_hang_past_the_timeout_fails_in_bounded_time(fake: FakeProvider) -> None:
    fake.script(Reply(delay_s=1.5, body="late"), Reply(delay_s=1.5, body="late"))
    llm = backend(fake, timeout_s=0.2, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(LLMError, match="ReadTimeout"):
        llm.predict(TEXTS)
    assert time.monotonic() - started < 1.2
    assert len(fake.seen) == 2


def test_breaker_opens_refuses_then_closes_after_its_cool_off(fake: FakeProvider) -> None:
    now = [1000.0]
    breaker = CircuitBreaker(
        "llm/openai/test", failure_threshold=2, cooldown_s=30, clock=lambda: now[0]
    )
    llm = backend(fake, max_attempts=1, breaker=breaker)

    fake.script(Reply(500, "down"), Reply(500, "down"))
    for _ in range(2):
        with pytest.raises(LLMError):
            llm.predict(TEXTS)
    assert breaker.state == "open"
    # Open: refused at once, no request made; the chain sees a BackendUnavailable.
    with pytest.raises(CircuitOpen, match="circuit open"):
        llm.predict(TEXTS)
    assert issubclass(CircuitOpen, BackendUnavailable)
    now[0] += 29
    with pytest.raises(CircuitOpen):
        llm.predict(TEXTS)
    assert len(fake.seen) == 2

    # Cool-off over: one trial; it fails, so the breaker opens again for another cool-off.
    now[0] += 1
    assert breaker.state == "half-open"
    fake.script(Reply(500, "still down"))
    with pytest.raises(LLMError):
        llm.predict(TEXTS)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        llm.predict(TEXTS)
    assert len(fake.seen) == 3

    # Next trial succeeds: closed, and calls flow again.
    now[0] += 30
    fake.script(chat(json.dumps(ITEMS)), chat(json.dumps(ITEMS)))
    assert len(llm.predict(TEXTS)) == 3
    assert breaker.state == "closed"
    assert len(llm.predict(TEXTS)) == 3
    assert len(fake.seen) == 5


def test_a_success_resets_the_failure_count(fake: FakeProvider) -> None:
    breaker = CircuitBreaker("llm/openai/test", failure_threshold=2, cooldown_s=30)
    llm = backend(fake, max_attempts=1, breaker=breaker)
    fake.script(Reply(500, "x"), chat(json.dumps(ITEMS)), Reply(500, "x"))
    for expect_error in (True, False, True):
        if expect_error:
            with pytest.raises(LLMError):
                llm.predict(TEXTS)
        else:
            llm.predict(TEXTS)
    assert breaker.state == "closed"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_key_never_appears_in_logs_reprs_or_errors(
    fake: FakeProvider, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, httpx and httpcore included
    settings = Settings(
        _env_file=None,
        llm_provider=provider,
        llm_api_key=KEY,
        llm_base_url=fake.url + PREFIX[provider],
        llm_max_attempts=2,
    )
    llm = load_llm_backend(settings, sleep=Sleeps())
    fake.script(
        Reply(500, echo_credentials=True),
        Reply(401, echo_credentials=True),
        Reply(429, echo_credentials=True, headers={"Retry-After": "0"}),
        Reply(500, echo_credentials=True),
    )
    errors = []
    for _ in range(2):
        with pytest.raises(LLMError) as caught:
            llm.predict(TEXTS)
        errors.append(str(caught.value))
    assert len(fake.seen) == 4
    assert "***" in errors[0]  # the echoed key was there, and was scrubbed
    assert caplog.records, "the retries were logged"
    everything = [caplog.text, *errors, repr(llm), repr(settings), str(settings)]
    everything += [r.getMessage() for r in caplog.records]
    for text in everything:
        assert KEY not in text
    llm.close()


def test_a_big_batch_is_split_into_requests_and_answers_keep_their_order(
    fake: FakeProvider,
) -> None:
    fake.script(chat(json.dumps(ITEMS[:2])), chat(json.dumps(ITEMS[2:])))
    predictions = backend(fake, posts_per_request=2).predict(TEXTS)
    assert [p.sentiment for p in predictions] == ["positive", "negative", "neutral"]
    assert len(fake.seen) == 2
    assert '1. "the bus is at 9"' in fake.seen[1].body["messages"][1]["content"]
