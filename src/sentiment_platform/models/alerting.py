"""The alerting tables: alerts raised, users' rules, webhook deliveries, and the per-rule
counts the monitor evaluates (split from `database.py`, which keeps the posts' tables).

At most one alert row per `alert_type` is `firing` (a partial unique index), so two alert
monitors can never both open an incident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sentiment_platform.domain import utcnow
from sentiment_platform.models.database import Base, BigIntId, UTCDateTime


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    alert_type: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The rule that raised it (0005): 0 or NULL (rows from before rules) is the built-in rule.
    # No foreign key: a deleted rule's alerts stay, with the name it had.
    rule_id: Mapped[int | None] = mapped_column(BigIntId)
    rule_name: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        Index("ix_alerts_created_at", "created_at"),
        Index("ix_alerts_rule_created_at", "rule_id", "created_at"),
        # At most one open incident per type, whatever the monitors believe (0002).
        Index(
            "ux_alerts_one_firing",
            "alert_type",
            unique=True,
            postgresql_where=text("state = 'firing'"),
            sqlite_where=text("state = 'firing'"),
        ),
    )


class AlertRule(Base):
    """A user's alert rule (issue 14, 0005); the built-in rule (id 0) has no row."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))
    emotion: Mapped[str | None] = mapped_column(String(16))
    threshold: Mapped[float] = mapped_column(Float)
    window_minutes: Mapped[int] = mapped_column(Integer)
    min_posts: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # stored, never returned
    # 0010: count each group of copies once (new rules default to true), and one language.
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def has_secret(self) -> bool:
        return bool(self.webhook_secret)


class WebhookDelivery(Base):
    """One notification to send (a fire, re-notification or resolve), kept until delivered
    or given up: at least once, in order per rule (`id` order), surviving restarts.

    `attempt` counts the tries so far; `status` / `error` are the last one's; `attempts` logs
    each try (`at`, `attempt`, `status`, `error`)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigIntId)
    rule_id: Mapped[int] = mapped_column(BigIntId)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_webhook_deliveries_alert", "alert_id", "id"),
        # The queue: the pending deliveries of each rule, oldest first.
        Index(
            "ix_webhook_deliveries_pending",
            "rule_id",
            "id",
            postgresql_where=text("NOT done"),
            sqlite_where=text("NOT done"),
        ),
    )


class RuleCount(Base):
    """Analysed posts per rule, per minute of analysis (UTC, truncated), per sentiment and
    emotion (0006): what the alert monitor evaluates every rule from, without reading posts.

    Rule 0 (the built-in rule) counts every analysed post; a user rule the posts it matches.
    Added by the worker in the transaction that saves the analyses (`store.add_rule_counts`).
    """

    __tablename__ = "rule_counts"

    rule_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    sentiment: Mapped[str] = mapped_column(String(16), primary_key=True)
    emotion: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
