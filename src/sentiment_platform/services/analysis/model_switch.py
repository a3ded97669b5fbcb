"""A worker's switch to newly activated models: no restart, no message to miss.

What it loads and swaps is the whole set of pairs, one per language an activation names
(`registry_backend.Routes`): a batch of many languages is analysed by one set throughout.

Activations are rows in the store, so the switch polls them as the rule matcher polls the
rules: `store.activation_version`, at most every `POLL_S`, read in the transaction the worker
already opens to save a batch (and in a short one of its own when it is idle, so an idle
worker is ready before the next post arrives). When the version moved, the new pair is
loaded in a thread, off the event loop, while the current pair keeps analysing; the worker
swaps it in between two batches (`swap`), so no batch is analysed half by one model and
half by another. A pair that fails to load is logged once and reported through the
backend's `problem` (hence /api/health); the pair serving keeps serving, and activating
again (after fixing the files) tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform import store
from sentiment_platform.config import Settings
from sentiment_platform.services.analysis.backends import Analyzer
from sentiment_platform.services.analysis.registry import ensure_embedded, serving_routes
from sentiment_platform.services.analysis.registry_backend import (
    ChoicesByLanguage,
    RegistryBackend,
    Routes,
    check_loads,
)
from sentiment_platform.services.analysis.sentiment_analyzer import SentimentAnalyzer
from sentiment_platform.telemetry import MODEL_LOAD_FAILED

log = logging.getLogger(__name__)

POLL_S = 2.0  # how often a worker asks whether the activations moved


class ModelSwitch:
    """Polls the activations, loads the pair they name off the loop, swaps it in between
    batches. One per worker; `clock` is for tests."""

    def __init__(
        self,
        backend: RegistryBackend,
        leads: bool = True,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.leads = leads  # first in the chain: otherwise another backend answers first
        self.poll_s = poll_s
        self.clock = clock
        self._version: store.ActivationVersion | None = None
        self._next_poll = 0.0
        self._loading: asyncio.Task[None] | None = None
        self._ready: Routes | None = None

    def due(self) -> bool:
        return self.clock() >= self._next_poll

    async def poll(self, session: AsyncSession) -> None:
        """In the caller's transaction: if a poll is due and the activations moved, start
        loading the pair they name."""
        if not self.due():
            return
        self._next_poll = self.clock() + self.poll_s
        version = await store.activation_version(session)
        if version == self._version:
            return
        choices = await serving_routes(session)
        self._version = version
        if self._ready is not None:  # loaded for activations that are no longer current
            self.backend.discard(self._ready)
            self._ready = None
        self._loading = asyncio.create_task(self._load(version, choices))

    async def poll_alone(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """An idle worker's poll, in a short transaction of its own; a store outage here is
        not the worker's problem (the next batch's save waits it out)."""
        if not self.due():
            return
        try:
            async with sessions() as session, session.begin():
                await self.poll(session)
        except Exception as error:  # noqa: BLE001 - retried at the next poll
            log.debug(
                "activation poll failed",
                extra={"event": "registry.poll_failed", "error": type(error).__name__},
            )

    async def start(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Before the first batch: write the embedded model's rows, and load and swap in what
        is active, so a worker (re)started after an activation never serves the old pair."""
        try:
            async with sessions() as session, session.begin():
                await ensure_embedded(session)
                self._next_poll = 0.0
                await self.poll(session)
        except Exception as error:  # noqa: BLE001 - the polls catch up once the store answers
            log.warning(
                "model activations unreadable at start; serving %s until they are",
                self.backend.name,
                extra={"event": "registry.start_failed", "error": type(error).__name__},
            )
            return
        if self._loading is not None:
            await asyncio.shield(self._loading)
        self.swap()

    def swap(self) -> bool:
        """Between batches: serve the pair that finished loading, if any. True if it swapped."""
        ready, self._ready = self._ready, None
        if ready is None:
            return False
        before, old = self.backend.name, self.backend.routes.summary
        self.backend.swap(ready)
        MODEL_LOAD_FAILED.set(0)
        if ready.summary != old:
            log.info(
                "models switched",
                extra={
                    "event": "registry.switched",
                    "old": before,
                    "model": ready.name,
                    "languages": ready.summary,
                },
            )
            if not self.leads:
                log.warning(
                    "the registry's models answer only when the backends before `embedded` "
                    "in ANALYZER_BACKENDS fail: list it first to serve them",
                    extra={"event": "registry.not_first", "model": ready.name},
                )
        return True

    async def _load(self, version: store.ActivationVersion, choices: ChoicesByLanguage) -> None:
        try:
            models = await asyncio.to_thread(self.backend.load, choices)
        except Exception as error:  # noqa: BLE001 - reported, never served
            if version == self._version:
                self.backend.problem = f"{error}; still serving {self.backend.name}"
                MODEL_LOAD_FAILED.set(1)
                log.error(
                    "activated model failed to load",
                    extra={"event": "registry.load_failed", "error": str(error)},
                )
            return
        if version != self._version:  # a newer activation is loading already
            self.backend.discard(models)
            return
        if self._ready is not None:
            self.backend.discard(self._ready)
        self._ready = models

    async def close(self) -> None:
        """Stop a load in flight (the worker stops) and release a pair never swapped in."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self._ready is not None:
            self.backend.discard(self._ready)
            self._ready = None


class ModelCheck:
    """For a process that runs no worker (the API in Redis mode): whether the models the
    workers are told to serve load, so /api/health can say what the workers meet. Asked on
    each health request, it reads the activations at most every `POLL_S` and, when they
    moved, loads the imported models once in a thread and lets them go."""

    def __init__(
        self,
        settings: Settings,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.poll_s = poll_s
        self.clock = clock
        self._version: store.ActivationVersion | None = None
        self._next_poll = 0.0
        self._checking: asyncio.Task[None] | None = None
        self._problem: str | None = None

    async def problem(self, sessions: async_sessionmaker[AsyncSession]) -> str | None:
        """Why the active models cannot serve (None: they load, or are being checked)."""
        if self.clock() >= self._next_poll:
            self._next_poll = self.clock() + self.poll_s
            try:
                async with sessions() as session:
                    version = await store.activation_version(session)
                    if version != self._version:
                        choices = await serving_routes(session)
                        self._version = version
                        self._checking = asyncio.create_task(self._check(version, choices))
            except Exception as error:  # noqa: BLE001 - the database's own check says so
                log.debug(
                    "activation check failed",
                    extra={"event": "registry.check_failed", "error": type(error).__name__},
                )
        return self._problem

    async def _check(self, version: store.ActivationVersion, choices: ChoicesByLanguage) -> None:
        problem = await asyncio.to_thread(check_loads, self.settings, choices)
        if version == self._version:
            self._problem = problem


def model_switch_for(analyzer: Analyzer) -> ModelSwitch | None:
    """The switch for an analyzer whose chain serves the registry; None for any other (a
    test's stand-in, a chain without the `embedded` entry)."""
    if not isinstance(analyzer, SentimentAnalyzer):
        return None
    for position, backend in enumerate(analyzer.backends):
        if isinstance(backend, RegistryBackend):
            return ModelSwitch(backend, leads=position == 0)
    return None
