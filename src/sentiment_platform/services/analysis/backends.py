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
