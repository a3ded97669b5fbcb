"""The analyzer chain: fall-through, escalation, startup errors, and staying off the loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from sentiment_platform.config import Settings
from sentiment_platform.domain import Emotion, Prediction, Sentiment
from sentiment_platform.services.analysis.backends import BackendUnavailable
from sentiment_platform.services.analysis.circuit_breaker import CircuitOpen, ProviderOutage
from sentiment_platform.services.analysis.llm import RateLimited
from sentiment_platform.services.analysis.sentiment_analyzer import (
    AnalysisFailed,
    AnalyzerOutage,
    AnalyzerUnavailable,
    Escalation,
    SentimentAnalyzer,
)
from tests.support.hf_tiny import HARTMANN_LABELS, SENTIMENT_LABELS, build_tiny_classifier

TEXTS = ["great stuff", "awful", "meh"]


class Scripted:
    """A tiny backend: fixed confidences per call, or a failure; records what it was asked."""

    def __init__(
        self,
        name: str,
        confidences: Sequence[float] = (0.9,),
        sentiment: Sentiment = Sentiment.POSITIVE,
        fail: Exception | None = None,
        short: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.confidences = list(confidences)
        self.sentiment = sentiment
        self.fail = fail
        self.short = short
        self.delay_s = delay_s
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.closed = False

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        answers = [
            Prediction(
                sentiment=self.sentiment,
                confidence=self.confidences[i % len(self.confidences)],
                emotion=Emotion.NEUTRAL,
                emotion_confidence=0.5,
                model=self.name,
            )
            for i in range(len(texts))
        ]
        return answers[:-1] if self.short else answers

    def close(self) -> None:
        self.closed = True


def skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The skip lines as the console shows them: the message, then its fields."""
    return [
        f"{r.getMessage()} backend={r.backend} reason={r.reason}"
        for r in caplog.records
        if getattr(r, "event", None) == "analyzer.backend_skipped"
    ]


async def test_the_first_backend_answers_the_whole_batch_in_one_call() -> None:
    first, second = Scripted("first/v1"), Scripted("second/v1")
    analyzer = SentimentAnalyzer([first, second])

    predictions = await analyzer.analyze(TEXTS)

    assert [p.model for p in predictions] == ["first/v1"] * 3
    assert first.calls == [TEXTS]
    assert second.calls == []
    assert analyzer.backend_names == ["first/v1", "second/v1"]
    assert analyzer.status == "ok: first/v1"
    assert await analyzer.analyze([]) == []
    analyzer.close()


async def test_a_failing_backend_falls_through_for_that_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Scripted("broken/v1", fail=RuntimeError("CUDA out of memory"))
    fallback = Scripted("fallback/v1", sentiment=Sentiment.NEGATIVE)
    analyzer = SentimentAnalyzer([broken, fallback])

    predictions = await analyzer.analyze(TEXTS)

    assert [(p.model, p.sentiment) for p in predictions] == [("fallback/v1", "negative")] * 3
    assert analyzer.status == "degraded: fallback/v1 (broken/v1 failing)"
    failures = [r for r in caplog.records if r.getMessage().startswith("backend failed")]
    assert len(failures) == 1  # one line per failed batch, not per post
    assert failures[0].levelno == logging.WARNING
    assert "backend=broken/v1" in failures[0].getMessage()
    assert "CUDA out of memory" in failures[0].getMessage()

    # The next batch tries the first backend again: a transient failure costs one batch.
    broken.fail = None
    await analyzer.analyze(TEXTS)
    assert analyzer.status == "ok: broken/v1"
    analyzer.close()


async def test_an_answer_of_the_wrong_length_falls_through() -> None:
    analyzer = SentimentAnalyzer([Scripted("short/v1", short=True), Scripted("good/v1")])
    predictions = await analyzer.analyze(TEXTS)
    assert [p.model for p in predictions] == ["good/v1"] * 3
    analyzer.close()


async def test_every_backend_failing_is_an_error_naming_each() -> None:
    analyzer = SentimentAnalyzer(
        [
            Scripted("a/v1", fail=RuntimeError("model crashed")),
            Scripted("b/v1", fail=BackendUnavailable("circuit open")),
        ]
    )
    with pytest.raises(AnalysisFailed, match=r"a/v1: model crashed; b/v1: circuit open"):
        await analyzer.analyze(TEXTS)
    assert analyzer.status.startswith("down:")
    analyzer.close()


async def test_every_backend_refusing_as_an_outage_is_an_outage_not_a_failure() -> None:
    """Rate limited or circuit open everywhere: the worker waits; one real failure among
    them and it is an ordinary failure, counted against the posts."""
    outage = SentimentAnalyzer(
        [
            Scripted("a/v1", fail=CircuitOpen("a/v1: circuit open, next try in 5s")),
            Scripted("b/v1", fail=RateLimited("b/v1: HTTP 429: slow down")),
        ]
    )
    with pytest.raises(AnalyzerOutage):
        await outage.analyze(TEXTS)
    outage.close()
    mixed = SentimentAnalyzer(
        [
            Scripted("a/v1", fail=RuntimeError("model crashed")),
            Scripted("b/v1", fail=RateLimited("b/v1: HTTP 429: slow down")),
        ]
    )
    with pytest.raises(AnalysisFailed) as failed:
        await mixed.analyze(TEXTS)
    assert not isinstance(failed.value, ProviderOutage)
    mixed.close()


async def test_inference_runs_off_the_event_loop() -> None:
    slow = Scripted("slow/v1", delay_s=0.3)
    analyzer = SentimentAnalyzer([slow])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    await analyzer.analyze(TEXTS)
    task.cancel()

    assert ticks >= 10, "the loop was blocked while the model ran"
    assert slow.threads[0].startswith("analyzer")
    assert slow.threads[0] != threading.main_thread().name
    analyzer.close()


async def test_unsure_posts_are_re_asked_of_the_llm() -> None:
    local = Scripted("local/v1", confidences=[0.95, 0.40, 0.69])
    llm = Scripted("llm/test", sentiment=Sentiment.NEGATIVE, confidences=[0.99])
    analyzer = SentimentAnalyzer([local], escalation=Escalation(llm, below=0.7))

    predictions = await analyzer.analyze(TEXTS)

    assert llm.calls == [["awful", "meh"]]  # one call, only the unsure posts
    assert [(p.model, p.confidence) for p in predictions] == [
        ("local/v1", 0.95),
        ("llm/test", 0.99),
        ("llm/test", 0.99),
    ]
    analyzer.close()


async def test_a_failed_escalation_keeps_the_local_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    local = Scripted("local/v1", confidences=[0.4])
    llm = Scripted("llm/test", fail=RuntimeError("HTTP 500"))
    analyzer = SentimentAnalyzer([local], escalation=Escalation(llm, below=0.7))

    predictions = await analyzer.analyze(TEXTS)

    assert [p.model for p in predictions] == ["local/v1"] * 3
    assert analyzer.status == "ok: local/v1"
    assert any("escalation failed backend=llm/test" in r.getMessage() for r in caplog.records)
    analyzer.close()


async def test_the_llm_is_not_asked_twice_when_it_answered_the_batch() -> None:
    llm = Scripted("llm/test", confidences=[0.3])
    analyzer = SentimentAnalyzer(
        [Scripted("local/v1", fail=RuntimeError("down")), llm],
        escalation=Escalation(llm, below=0.7),
    )
    predictions = await analyzer.analyze(TEXTS)
    assert [p.model for p in predictions] == ["llm/test"] * 3
    assert len(llm.calls) == 1
    analyzer.close()


def test_close_releases_every_backend_once() -> None:
    local, llm = Scripted("local/v1"), Scripted("llm/test")
    analyzer = SentimentAnalyzer([local, llm], escalation=Escalation(llm, below=0.5))
    analyzer.close()
    assert local.closed and llm.closed
    assert analyzer.status.startswith("down:")


def test_no_backends_is_refused() -> None:
    with pytest.raises(AnalyzerUnavailable):
        SentimentAnalyzer([])


# --- from_settings: the real loaders -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chain-models")
    return (
        build_tiny_classifier(root / "tiny-sentiment", SENTIMENT_LABELS, "roberta"),
        build_tiny_classifier(root / "tiny-emotion", HARTMANN_LABELS, "bert"),
    )


# Nothing listens on port 9 of the loopback: the LLM fails fast and for real.
DEAD_LLM = {
    "llm_provider": "openai",
    "llm_api_key": "sk-test-unused-key",
    "llm_base_url": "http://127.0.0.1:9/v1",
    "llm_max_attempts": 1,
}


def test_no_backend_available_is_a_startup_error_saying_what_to_configure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        _env_file=None,
        analyzer_backends="transformers,llm",
        sentiment_model="nobody-org/absent-model",
    )
    with pytest.raises(AnalyzerUnavailable) as caught:
        SentimentAnalyzer.from_settings(settings)
    message = str(caught.value)
    assert "SENTIMENT_MODEL='nobody-org/absent-model'" in message
    assert "LLM_PROVIDER" in message
    assert "sentiment-platform train" in message
    lines = skipped(caplog)
    assert len(lines) == 2  # exactly one line per skipped backend
    assert lines[0].startswith("backend skipped backend=transformers reason=SENTIMENT_MODEL=")
    assert "hf download nobody-org/absent-model" in lines[0]
    assert (
        lines[1]
        == "backend skipped backend=llm reason=LLM_PROVIDER is not set (groq, openai or anthropic)"
    )


def test_unknown_backend_names_are_refused() -> None:
    settings = Settings(_env_file=None, analyzer_backends="transformers,bert")
    with pytest.raises(AnalyzerUnavailable, match="unknown backend 'bert'.*'embedded'"):
        SentimentAnalyzer.from_settings(settings)


async def test_a_missing_model_is_skipped_once_and_the_chain_moves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        _env_file=None,
        analyzer_backends="transformers,llm",
        sentiment_model="nobody-org/absent-model",
        **DEAD_LLM,
    )
    analyzer = SentimentAnalyzer.from_settings(settings)
    assert analyzer.backend_names == ["llm/openai/gpt-4o-mini"]
    assert len(skipped(caplog)) == 1

    # The LLM is unreachable: each batch fails clearly, and no skip line repeats per post.
    for _ in range(2):
        with pytest.raises(AnalysisFailed, match="llm/openai/gpt-4o-mini: .*ConnectError"):
            await analyzer.analyze(TEXTS)
    assert len(skipped(caplog)) == 1
    analyzer.close()


async def test_a_real_chain_from_settings_with_escalation(
    tiny_models: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sentiment, emotion = tiny_models
    settings = Settings(
        _env_file=None,
        analyzer_backends="transformers",
        sentiment_model=str(sentiment),
        emotion_model=str(emotion),
        llm_escalate_below=1.0,  # every post is "unsure": each batch asks the (dead) LLM
        **DEAD_LLM,
    )
    analyzer = await asyncio.to_thread(SentimentAnalyzer.from_settings, settings)
    assert analyzer.backend_names == ["transformers/tiny-sentiment"]
    assert skipped(caplog) == []

    predictions = await analyzer.analyze(TEXTS)

    assert len(predictions) == 3
    assert {p.model for p in predictions} == {"transformers/tiny-sentiment"}
    assert all(0.0 <= p.confidence <= 1.0 for p in predictions)
    assert analyzer.status == "ok: transformers/tiny-sentiment"
    assert any(
        r.getMessage().startswith("escalation failed backend=llm/openai/gpt-4o-mini posts=3")
        for r in caplog.records
    )
    analyzer.close()


def test_escalation_without_an_llm_is_disabled_with_a_warning(
    tiny_models: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    sentiment, emotion = tiny_models
    settings = Settings(
        _env_file=None,
        analyzer_backends="transformers",
        sentiment_model=str(sentiment),
        emotion_model=str(emotion),
        llm_escalate_below=0.6,
    )
    analyzer = SentimentAnalyzer.from_settings(settings)
    assert any(r.getMessage().startswith("escalation disabled") for r in caplog.records)
    analyzer.close()
