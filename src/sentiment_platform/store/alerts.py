"""Alerts: the pages of `/api/alerts`, and the monitor's SQL (the open incidents and their
rows' writes; the window counts are `rule_counts`). The caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.models.alerting import Alert
from sentiment_platform.rule_spec import BUILTIN_RULE_ID, BUILTIN_RULE_NAME
from sentiment_platform.store.prepared import dialect_name


async def list_alerts(
    session: AsyncSession, limit: int, since: datetime | None = None, rule_id: int | None = None
) -> tuple[list[Alert], int]:
    """Alerts newest first (of one rule, when given), and how many match in all."""
    query = select(Alert)
    count_query = select(func.count()).select_from(Alert)
    if since is not None:
        query = query.where(Alert.created_at >= since)
        count_query = count_query.where(Alert.created_at >= since)
    if rule_id is not None:
        query = query.where(rule_filter(rule_id))
        count_query = count_query.where(rule_filter(rule_id))
    rows = await session.scalars(
        query.order_by(Alert.created_at.desc(), Alert.id.desc()).limit(limit)
    )
    return list(rows), (await session.execute(count_query)).scalar_one()


# --- the alert monitor's SQL ---------------------------------------------------------------

FIRING = "firing"  # Alert.state of an open incident: at most one per alert_type (unique index)


async def firing_alert(session: AsyncSession, alert_type: str) -> Alert | None:
    """The open (firing) incident of this type, if any."""
    return await session.scalar(
        select(Alert)
        .where(Alert.alert_type == alert_type, Alert.state == FIRING)
        .order_by(Alert.created_at.desc(), Alert.id.desc())
        .limit(1)
    )


async def firing_alerts(session: AsyncSession) -> list[Alert]:
    """Every open incident, of every rule (a handful: one per rule at most)."""
    return list(await session.scalars(select(Alert).where(Alert.state == FIRING)))


async def insert_firing_alert(
    session: AsyncSession,
    *,
    alert_type: str,
    severity: str,
    message: str,
    details: dict[str, Any],
    created_at: datetime,
    rule_id: int = BUILTIN_RULE_ID,
    rule_name: str = BUILTIN_RULE_NAME,
) -> Alert | None:
    """Open an incident of a rule: INSERT … ON CONFLICT DO NOTHING on the one-firing-row
    index (`alert_type` is the rule's, `rules.rule_alert_type`), with its rule id and name.

    Returns the new row, or None when another monitor's firing row of this type already
    exists (the database, not the lease, is what keeps one open incident per type).
    """
    values = {
        "rule_id": rule_id,
        "rule_name": rule_name,
        "alert_type": alert_type,
        "severity": severity,
        "state": FIRING,
        "message": message,
        "details": details,
        "created_at": created_at,
    }
    dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
    statement = (
        dialect.insert(Alert)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=[Alert.alert_type], index_where=text(f"state = '{FIRING}'")
        )  # the partial index `ux_alerts_one_firing`, and no other conflict
        .returning(Alert)
    )
    inserted: Alert | None = await session.scalar(statement)
    return inserted


async def update_alert(session: AsyncSession, alert_id: int, **values: Any) -> Alert | None:
    """Set columns of one alert row; `details` is merged into what the row holds.

    Returns the updated row, or None when it is gone.
    """
    alert = await session.get(Alert, alert_id)
    if alert is None:
        return None
    if "details" in values:
        values["details"] = (alert.details or {}) | values["details"]
    for name, value in values.items():
        setattr(alert, name, value)
    await session.flush()
    return alert


def rule_filter(rule_id: int) -> ColumnElement[bool]:
    """Alerts of one rule; rows from before rules (rule_id NULL) are the built-in rule's."""
    if rule_id == BUILTIN_RULE_ID:
        return or_(Alert.rule_id == BUILTIN_RULE_ID, Alert.rule_id.is_(None))
    return Alert.rule_id == rule_id


async def get_alert(session: AsyncSession, alert_id: int) -> Alert | None:
    return await session.get(Alert, alert_id)


async def close_rule_alerts(session: AsyncSession, rule_id: int, now: datetime) -> list[int]:
    """Close a deleted rule's open incident (no notification: its deliveries are cancelled).
    Returns the ids closed."""
    closed = list(
        await session.scalars(
            select(Alert).where(Alert.rule_id == rule_id, Alert.state == "firing")
        )
    )
    for alert in closed:
        alert.state, alert.resolved_at = "resolved", now
        alert.message = f"Closed: the rule was deleted ({alert.message})"
        alert.details = (alert.details or {}) | {"closed": "the rule was deleted"}
    await session.flush()
    return [alert.id for alert in closed]
