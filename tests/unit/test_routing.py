"""Routing by language (issue 31): which backends read a post, and the chain's answer for a
batch of many languages, as pure code (stand-in backends; the real models end to end are in
tests/integration/test_languages.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from sentiment_platform.domain import Emotion, Prediction, Sentiment
from sentiment_platform.services.analysis.backends import analyze_languages
from sentiment_platform.services.analysis.registry_backend import ModelSet, Routes, Served
from sentiment_platform.services.analysis.routing import plan
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer


class Backend:
    """Labels everything with its name; reads `languages` (None: every language)."""

    def __init__(self, name: str, languages: set[str] | None = None) -> None:
        self.name = name
        self.languages = languages
        self.calls: list[list[str]] = []
        if languages is not None:
            self.reader = self._reader

    def _reader(self, language: str | None) -> Backend | None:
        assert self.languages is not None
        return self if language in self.languages | {None, "und"} else None

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(list(texts))
        return [Prediction(Sentiment.NEUTRAL, 0.9, Emotion.NEUTRAL, 0.9, self.name) for _ in texts]


def test_languages_with_the_same_readers_share_one_call() -> None:
    english, llm = Backend("en-model", {"en"}), Backend("llm")
    groups = plan([english, llm], ["en", "fr", "und", None, "de", "en"], english=False)
    chains = {tuple(r.name for _, r in chain): indices for chain, indices in groups}
    assert chains == {("en-model", "llm"): [0, 2, 3, 5], ("llm",): [1, 4]}


def test_what_no_backend_reads_is_left_out_unless_english_is_asked() -> None:
    english = Backend("en-model", {"en"})
    assert plan([english], ["fr", "de"], english=False) == []
    [(chain, indices)] = plan([english], ["fr", "en"], english=True)
    assert ([r.name for _, r in chain], indices) == (["en-model"], [0, 1])


def test_the_chain_labels_each_post_with_a_model_that_reads_it() -> None:
    english, llm = Backend("en-model", {"en"}), Backend("llm")
    analyzer = SentimentAnalyzer([english, llm])
    texts = ["good", "bon", "gut", "ok"]
    found = analyzer.analyze_routed_blocking(texts, ["en", "fr", "de", "und"])
    assert [p.model if p else None for p in found] == ["en-model", "llm", "llm", "en-model"]
    assert english.calls == [["good", "ok"]] and llm.calls == [["bon", "gut"]]
    assert analyzer.status == "ok: en-model"  # the LLM read what the first may not: no fallback
    alone = SentimentAnalyzer([Backend("en-model", {"en"})])
    assert alone.analyze_routed_blocking(["bon", "good"], ["fr", "en"])[0] is None
    anyway = SentimentAnalyzer([Backend("en-model", {"en"})], unsupported_languages="english")
    assert [p.model for p in anyway.analyze_routed_blocking(["bon"], ["fr"]) if p] == ["en-model"]


def test_an_analyzer_that_does_not_route_reads_every_language() -> None:
    class Plain:
        async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
            return Backend("plain").predict(texts)

    found = asyncio.run(analyze_languages(Plain(), ["bon", "good"], ["fr", "en"]))
    assert [p.model for p in found if p] == ["plain", "plain"]


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "star"), ("und", "star"), (None, "star"), ("fr", "french"), ("de", None)],
)
def test_a_pair_reads_a_language_only_when_both_its_models_are_registered_for_it(
    language: str | None, expected: str | None
) -> None:
    def pair(name: str, sentiment: set[str], emotion: set[str]) -> ModelSet:
        return ModelSet(
            None,  # type: ignore[arg-type]  # the embedded model is not asked here
            Served(name, None, None, frozenset(sentiment)),
            Served(name, None, None, frozenset(emotion)),
        )

    routes = Routes(
        pair("star", {"en", "de"}, {"en"}),  # its emotion model does not read German
        {"fr": pair("french", {"fr"}, {"fr"}), "it": pair("half", {"it"}, {"en"})},
    )
    reader = routes.reader(language)
    assert (reader.name if reader else None) == expected
    assert routes.reader("it") is None  # a language's pair that only half reads it
