"""The contract every analyzer backend keeps, so the chain can treat them alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from sentiment_platform.domain import Prediction


class BackendUnavailable(RuntimeError):
    """A backend cannot serve here (weights missing, no key, provider down); the chain moves on."""


@runtime_checkable
class Backend(Protocol):
    """A batch-capable model. `predict` blocks: the chain calls it from a worker thread."""

    name: str

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order; raises on failure so the chain can fall through."""
        ...


class Analyzer(Protocol):
    """What the worker needs: a batch labelled off the event loop (the chain, or a stand-in
    such as the benchmarks' trivial analyzer)."""

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]: ...


@runtime_checkable
class RoutingAnalyzer(Protocol):
    """An analyzer that reads each text's language and labels it only with a model that
    reads that language (the chain: `SentimentAnalyzer.analyze_routed`)."""

    async def analyze_routed(
        self, texts: Sequence[str], languages: Sequence[str | None]
    ) -> list[Prediction | None]: ...


async def analyze_languages(
    analyzer: Analyzer, texts: Sequence[str], languages: Sequence[str | None]
) -> list[Prediction | None]:
    """One prediction per text, None where no model may read its language. An analyzer that
    does not route (the benchmarks' trivial one, a test's stand-in) reads every language."""
    if isinstance(analyzer, RoutingAnalyzer):
        return await analyzer.analyze_routed(texts, languages)
    return list(await analyzer.analyze(texts))
