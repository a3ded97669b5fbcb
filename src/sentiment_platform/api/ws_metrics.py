"""The `/ws` `metrics` push, per filter: `/ws?language=fr&unique=true` gets the metrics of
French posts, each group of copies once, as `/api/metrics?language=fr&unique=true` answers.

Computed once per tick per filter that some client asked for (clients sharing a filter share
one computation and one encoded text), so a tick costs one answer per filter in use, never
one per client. At most `MAX_FILTERS` filters per process at a time: a client asking for one
more is closed (1013, try again later), so clients cannot make a tick cost hundreds of
answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment_platform.bus import encode_envelope
from sentiment_platform.rule_spec import language_code
from sentiment_platform.services.reporting.aggregator import compute_metrics, window

log = logging.getLogger(__name__)

MAX_FILTERS = 16  # distinct metrics filters served by one process at a time
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class MetricsFilter:
    """What a client's metrics count: one language's posts (None: all), copies once."""

    language: str | None = None
    unique: bool = False


EVERY_POST = MetricsFilter()


def filter_of(params: Mapping[str, str]) -> MetricsFilter:
    """A client's filter from its query string; ValueError naming the field otherwise."""
    language = params.get("language")
    if language is not None:
        try:
            language = language_code(language)
        except ValueError as error:
            raise ValueError(f"language: {error}") from None
    unique = params.get("unique", "false").strip().lower()
    if unique not in _TRUE + _FALSE:
        raise ValueError("unique: must be true or false")
    return MetricsFilter(language, unique in _TRUE)


async def metrics_texts(
    sessions: async_sessionmaker[AsyncSession],
    filters: Iterable[MetricsFilter],
    window_minutes: int,
    min_labels: int,
) -> dict[MetricsFilter, tuple[float, str]]:
    """The encoded `metrics` message of the last `window_minutes` per filter, with the
    monotonic time it was made; a filter whose computation failed is left out (logged)."""
    start, end = window(window_minutes)
    texts: dict[MetricsFilter, tuple[float, str]] = {}
    for wanted in filters:
        try:
            async with sessions() as session:
                metrics = await compute_metrics(
                    session,
                    start,
                    end,
                    language=wanted.language,
                    unique=wanted.unique,
                    min_labels=min_labels,
                )
        except Exception as error:  # noqa: BLE001 - a bad tick must not end the ticks
            log.warning(
                "ws metrics failed",
                extra={"event": "ws.metrics_failed", "error": type(error).__name__},
            )
            continue
        texts[wanted] = (
            time.monotonic(),
            encode_envelope("metrics", metrics.model_dump(mode="json")),
        )
    return texts
