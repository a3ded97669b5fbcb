"""Logs and Prometheus metrics, configured once per process.

The metric objects live here, at the bottom of the import graph, so the worker, the
analyzer, the hub and the monitor can all count into the same registry.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

from sentiment_platform.config import Settings

CONSOLE_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
# Loggers held at WARNING whatever LOG_LEVEL says: httpx writes every request's full URL at
# INFO (and httpcore its traffic at DEBUG), and a webhook's URL is often its secret (Slack's
# path is the credential); aiosqlite writes every statement's parameters at DEBUG, a rule's
# webhook URL and secret among them.
QUIET_LOGGERS = ("httpx", "httpcore", "aiosqlite")

POSTS_INGESTED = Counter(
    "sentiment_posts_ingested_total", "Posts accepted onto the bus", ["producer"]
)
POSTS_ANALYZED = Counter("sentiment_posts_analyzed_total", "Posts analysed and stored", ["model"])
POSTS_DEAD_LETTERED = Counter(
    "sentiment_posts_dead_lettered_total", "Entries moved to the dead-letter stream"
)
ANALYZER_LATENCY = Histogram(
    "sentiment_analyzer_batch_seconds",
    "Time one backend took for one batch",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAM_LENGTH = Gauge("sentiment_stream_length", "Entries in the input stream")
STREAM_PENDING = Gauge("sentiment_stream_pending", "Entries delivered but not acknowledged")
STREAM_LAG = Gauge("sentiment_stream_lag", "Entries not yet delivered to the consumer group")
WEBSOCKET_CLIENTS = Gauge("sentiment_websocket_clients", "Connected WebSocket clients")
ALERTS_FIRING = Gauge("sentiment_alerts_firing", "Alerts currently firing")
MODEL_LOAD_FAILED = Gauge(
    "sentiment_model_load_failed",
    "1 while the activated models failed to load here (the previous ones still serve)",
)


# What every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured twin of the message
}


def _value(value: object) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


class KeyValueFormatter(logging.Formatter):
    """The message, then each field given through `extra=` as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def configure_logging(settings: Settings) -> None:
    """One line per record: key=value for people, JSON for log shippers; the fields a call
    passes through `extra=` (`event`, `post_id`, `consumer`, …) are fields in both."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(KeyValueFormatter(CONSOLE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
