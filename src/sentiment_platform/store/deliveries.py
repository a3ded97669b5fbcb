"""The webhook delivery queue and its records: one row per notification, retried until done.
The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.alerting import WebhookDelivery


async def enqueue_delivery(
    session: AsyncSession, *, alert_id: int, rule_id: int, payload: dict[str, Any], now: datetime
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        alert_id=alert_id,
        rule_id=rule_id,
        payload=payload,
        attempt=0,
        attempts=[],
        created_at=now,
        next_attempt_at=now,
        done=False,
    )
    session.add(delivery)
    await session.flush()
    return delivery


async def due_deliveries(session: AsyncSession, now: datetime, limit: int) -> list[WebhookDelivery]:
    """The oldest pending delivery of each rule, where its next attempt is due: a rule's
    later notifications wait behind its first (in order per rule)."""
    heads = (
        select(func.min(WebhookDelivery.id))
        .where(WebhookDelivery.done.is_(False))
        .group_by(WebhookDelivery.rule_id)
    )
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id.in_(heads), WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return list(rows)


async def alert_deliveries(session: AsyncSession, alert_id: int) -> list[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.alert_id == alert_id)
        .order_by(WebhookDelivery.id)
    )
    return list(rows)


async def cancel_rule_deliveries(session: AsyncSession, rule_id: int, now: datetime) -> None:
    """A deleted rule's pending deliveries are done, cancelled."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.rule_id == rule_id, WebhookDelivery.done.is_(False))
        .values(done=True, error="cancelled: the rule was deleted", next_attempt_at=now)
    )
