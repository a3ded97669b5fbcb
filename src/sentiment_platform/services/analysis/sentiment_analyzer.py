"""The analyzer: a chain of batch backends tried in order, run off the event loop.

`ANALYZER_BACKENDS` names the chain (default transformers, embedded, llm). A backend that
cannot load here is skipped at startup with one log line; one that fails on a batch hands
that batch to the next. If nothing loads, startup fails with `AnalyzerUnavailable`: the
platform never invents labels. Optionally, posts the local model is unsure about
(`LLM_ESCALATE_BELOW`) are re-asked of the LLM.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sentiment_platform.config import Settings
from sentiment_platform.domain import Prediction
from sentiment_platform.services.analysis.backends import Backend, BackendUnavailable
from sentiment_platform.services.analysis.circuit_breaker import ProviderOutage
from sentiment_platform.services.analysis.llm import load_llm_backend
from sentiment_platform.services.analysis.routing import Chain, Reader, plan
from sentiment_platform.services.analysis.transformers_backend import load_transformers_backend
from sentiment_platform.telemetry import ANALYZER_LATENCY

logger = logging.getLogger(__name__)

HOW_TO_CONFIGURE = (
    "put SENTIMENT_MODEL/EMOTION_MODEL in the local Hugging Face cache (`hf download <id>`) "
    "or point them at local directories, train the embedded model (`sentiment-platform train`), "
    "or set LLM_PROVIDER and LLM_API_KEY; ANALYZER_BACKENDS chooses the chain"
)


class AnalyzerUnavailable(RuntimeError):
    """No backend could load, so the platform cannot label posts and must not start."""


class AnalysisFailed(RuntimeError):
    """Every backend failed on this batch; the caller keeps the posts to retry or dead-letter."""


class AnalyzerOutage(AnalysisFailed, ProviderOutage):
    """Every backend refused the batch as an outage (rate limited, circuit open): wait."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """Re-ask `backend` (the LLM) about posts whose local confidence is below `below`."""

    backend: Backend
    below: float


def _load_embedded(settings: Settings) -> Backend:
    """The registry's active models, the shipped one until something else is activated
    (`registry_backend`). Imported here: the embedded backend is optional and ships
    separately from this chain."""
    try:
        from sentiment_platform.services.analysis.registry_backend import load_registry_backend
    except ModuleNotFoundError as exc:
        if exc.name not in (
            "sentiment_platform.services.analysis.embedded_backend",
            "sentiment_platform.services.analysis.registry_backend",
        ):
            raise
        raise BackendUnavailable("the embedded backend is not part of this install") from exc
    return load_registry_backend(settings)


LOADERS: dict[str, Callable[[Settings], Backend]] = {
    "transformers": load_transformers_backend,
    "embedded": _load_embedded,
    "llm": load_llm_backend,
}


def _escalation(settings: Settings, llm: Backend | None, below: float) -> Escalation | None:
    """Reuse the chain's LLM, or load one just for escalation when the chain has none."""
    if llm is None:
        try:
            llm = load_llm_backend(settings)
        except BackendUnavailable as exc:
            logger.warning(
                "escalation disabled",
                extra={"event": "analyzer.escalation_off", "reason": str(exc)},
            )
            return None
    logger.info(
        "escalation enabled",
        extra={"event": "analyzer.escalation_on", "backend": llm.name, "below": below},
    )
    return Escalation(llm, below)


def _predict_checked(backend: Reader, texts: list[str]) -> list[Prediction]:
    """A backend's answer, refused unless it has exactly one prediction per text."""
    with ANALYZER_LATENCY.labels(backend=backend.name).time():
        predictions = backend.predict(texts)
    if len(predictions) != len(texts):
        raise RuntimeError(f"returned {len(predictions)} predictions for {len(texts)} texts")
    return predictions


def _failure_level(exc: Exception) -> int:
    # An open circuit already said so when it opened; repeating it per batch is noise.
    return logging.DEBUG if isinstance(exc, BackendUnavailable) else logging.WARNING


class SentimentAnalyzer:
    """Labels batches of texts with the first backend of the chain that answers."""

    def __init__(
        self,
        backends: Sequence[Backend],
        escalation: Escalation | None = None,
        unsupported_languages: str = "skip",
    ) -> None:
        if not backends:
            raise AnalyzerUnavailable(f"no analyzer backend given; {HOW_TO_CONFIGURE}")
        self._backends = list(backends)
        self._escalation = escalation
        # "english": a post no model reads gets an English post's chain (`routing.plan`).
        self._english = unsupported_languages == "english"
        # One thread: a batch already uses every core (torch) and batches stay in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyzer")
        self._status = f"ok: {self._backends[0].name}"

    @classmethod
    def from_settings(cls, settings: Settings) -> SentimentAnalyzer:
        """Load the configured chain. Blocking (it loads models): call it from a thread."""
        loaded: dict[str, Backend] = {}
        reasons: list[str] = []
        for name in dict.fromkeys(n.strip().lower() for n in settings.analyzer_backends):
            loader = LOADERS.get(name)
            if loader is None:
                raise AnalyzerUnavailable(
                    f"unknown backend {name!r} in ANALYZER_BACKENDS; choose from {sorted(LOADERS)}"
                )
            try:
                loaded[name] = loader(settings)
            except BackendUnavailable as exc:
                logger.warning(
                    "backend skipped",
                    extra={
                        "event": "analyzer.backend_skipped",
                        "backend": name,
                        "reason": str(exc),
                    },
                )
                reasons.append(f"{name}: {exc}")
                continue
            logger.info(
                "backend loaded",
                extra={
                    "event": "analyzer.backend_loaded",
                    "backend": name,
                    "model": loaded[name].name,
                },
            )
        if not loaded:
            tried = "; ".join(reasons) or "ANALYZER_BACKENDS is empty"
            raise AnalyzerUnavailable(
                f"no analyzer backend available ({tried}); {HOW_TO_CONFIGURE}"
            )
        below = settings.llm_escalate_below
        escalation = None if below is None else _escalation(settings, loaded.get("llm"), below)
        return cls(list(loaded.values()), escalation, settings.unsupported_languages)

    @property
    def backend_names(self) -> list[str]:
        """The loaded chain, in order, as each backend names itself in the `model` column."""
        return [backend.name for backend in self._backends]

    @property
    def backends(self) -> tuple[Backend, ...]:
        """The loaded chain, in order."""
        return tuple(self._backends)

    @property
    def status(self) -> str:
        """`ok: <backend>`, `degraded: <fallback> (...)` or `down: ...`, from the last batch;
        `down: <why>` while the first backend cannot serve what was asked of it (an activated
        model that failed to load, the previous one still serving)."""
        problem = getattr(self._backends[0], "problem", None)
        if problem and self._status.startswith("ok"):
            return f"down: {problem}"
        return self._status

    @property
    def answering(self) -> str:
        """`status` from the last batch alone: whether posts get labels (what /readyz asks),
        whichever model gives them."""
        return self._status

    async def analyze(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order, computed in the analyzer's thread."""
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.analyze_blocking, list(texts))

    def analyze_blocking(self, texts: Sequence[str]) -> list[Prediction]:
        """The chain itself, for callers with no event loop (evaluate, benchmarks)."""
        batch = list(texts)
        if not batch:
            return []
        return self._run(list(enumerate(self._backends)), batch)

    async def analyze_routed(
        self, texts: Sequence[str], languages: Sequence[str | None]
    ) -> list[Prediction | None]:
        """One prediction per text by a model that reads its language (`routing`), None
        where no model may; computed in the analyzer's thread."""
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.analyze_routed_blocking, list(texts), list(languages)
        )

    def analyze_routed_blocking(
        self, texts: Sequence[str], languages: Sequence[str | None]
    ) -> list[Prediction | None]:
        """`analyze_routed` without the event loop: one chain call per distinct chain."""
        if len(texts) != len(languages):
            raise ValueError(f"{len(languages)} languages for {len(texts)} texts")
        found: list[Prediction | None] = [None] * len(texts)
        for chain, indices in plan(self._backends, languages, self._english):
            predictions = self._run(chain, [texts[i] for i in indices])
            for index, prediction in zip(indices, predictions, strict=True):
                found[index] = prediction
        return found

    def _run(self, chain: Chain, batch: list[str]) -> list[Prediction]:
        """The first of `chain` that answers labels the batch; the status says which."""
        failures = []
        outages = 0
        for rank, (position, backend) in enumerate(chain):
            try:
                predictions = _predict_checked(backend, batch)
            except Exception as exc:
                outages += isinstance(exc, ProviderOutage)
                logger.log(
                    _failure_level(exc),
                    "backend failed backend=%s posts=%d error=%s: %s",
                    backend.name,
                    len(batch),
                    type(exc).__name__,
                    exc,
                )
                failures.append(f"{backend.name}: {exc}")
                continue
            # The status speaks of the chain's first backend: posts it does not read (their
            # language is another model's) neither prove it up nor degrade it.
            if position == 0:
                self._status = f"ok: {self._backends[0].name}"
            elif rank > 0:
                self._status = f"degraded: {backend.name} ({chain[0][1].name} failing)"
            return self._escalate(batch, predictions, backend)
        self._status = "down: every backend failed the last batch"
        if outages == len(chain):
            raise AnalyzerOutage("every backend is unavailable for now: " + "; ".join(failures))
        raise AnalysisFailed("every backend failed: " + "; ".join(failures))

    def _escalate(
        self, texts: list[str], predictions: list[Prediction], answered_by: Reader
    ) -> list[Prediction]:
        """Swap in the LLM's answers for the unsure posts; if it fails, keep the local ones."""
        escalation = self._escalation
        if escalation is None or answered_by is escalation.backend:
            return predictions
        unsure = [i for i, p in enumerate(predictions) if p.confidence < escalation.below]
        if not unsure:
            return predictions
        try:
            second = _predict_checked(escalation.backend, [texts[i] for i in unsure])
        except Exception as exc:
            logger.log(
                _failure_level(exc),
                "escalation failed backend=%s posts=%d error=%s: %s",
                escalation.backend.name,
                len(unsure),
                type(exc).__name__,
                exc,
            )
            return predictions
        merged = list(predictions)
        for i, prediction in zip(unsure, second, strict=True):
            merged[i] = prediction
        return merged

    def close(self) -> None:
        """Wait for the batch in flight, then release backends (HTTP clients, models)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        backends = {id(b): b for b in self._backends}
        if self._escalation is not None:
            backends.setdefault(id(self._escalation.backend), self._escalation.backend)
        for backend in backends.values():
            close = getattr(backend, "close", None)
            if callable(close):
                close()
        self._status = "down: analyzer closed"
