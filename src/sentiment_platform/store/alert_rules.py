"""Alert rules: the user's rules and the built-in one. The caller owns the transaction.

The built-in rule has no row: `builtin_rule(settings)` shows it as id 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.config import Settings
from sentiment_platform.models.alerting import AlertRule
from sentiment_platform.rule_spec import BUILTIN_RULE_ID, BUILTIN_RULE_NAME, RuleSpec, RuleView
from sentiment_platform.store.alerts import close_rule_alerts
from sentiment_platform.store.deliveries import cancel_rule_deliveries
from sentiment_platform.store.rule_counts import delete_rule_counts


def builtin_rule(settings: Settings) -> RuleView:
    """The seed's global alert as a read-only rule: id 0, from the ALERT_* settings."""
    return RuleView(
        id=BUILTIN_RULE_ID,
        name=BUILTIN_RULE_NAME,
        keywords=[],
        source=None,
        metric="negative_share",
        emotion=None,
        threshold=settings.alert_threshold,
        window_minutes=settings.alert_window_minutes,
        min_posts=settings.alert_min_posts,
        webhook_url=settings.alert_webhook_url,
        has_secret=settings.alert_webhook_secret is not None,
        builtin=True,
    )


def rule_view(rule: AlertRule) -> RuleView:
    return RuleView.model_validate(rule)


async def list_rules(session: AsyncSession) -> list[AlertRule]:
    """Every user rule, oldest first (at most MAX_ALERT_RULES)."""
    return list(await session.scalars(select(AlertRule).order_by(AlertRule.id)))


RulesVersion = tuple[int, int, datetime | None]


async def rules_version(session: AsyncSession) -> RulesVersion:
    """(count, highest id, latest update) of the user rules: changes whenever a rule is
    created, changed or deleted, for the price of one aggregate over at most 100 rows."""
    row = (
        await session.execute(
            select(func.count(), func.max(AlertRule.id), func.max(AlertRule.updated_at))
        )
    ).one()
    return int(row[0]), int(row[1] or 0), row[2]


async def count_rules(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(AlertRule))).scalar_one()


async def get_rule(session: AsyncSession, rule_id: int) -> AlertRule | None:
    return await session.get(AlertRule, rule_id)


def _columns(spec: RuleSpec) -> dict[str, Any]:
    values = spec.model_dump(exclude={"webhook_secret"})
    values["emotion"] = str(spec.emotion) if spec.emotion is not None else None
    return values


async def create_rule(session: AsyncSession, spec: RuleSpec, now: datetime) -> AlertRule:
    secret = spec.webhook_secret.get_secret_value() if spec.webhook_secret else None
    rule = AlertRule(**_columns(spec), webhook_secret=secret, created_at=now, updated_at=now)
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(
    session: AsyncSession, rule: AlertRule, spec: RuleSpec, now: datetime
) -> AlertRule:
    """Replace the rule's fields; a `webhook_secret` absent from the body keeps the stored
    one (the client cannot read it back), an explicit null clears it; a `unique` absent
    keeps the rule's (a rule from before copies were marked keeps counting every copy until
    it is asked otherwise, whatever a new rule's default)."""
    for name, value in _columns(spec).items():
        if name != "unique" or "unique" in spec.model_fields_set:
            setattr(rule, name, value)
    if "webhook_secret" in spec.model_fields_set:
        secret = spec.webhook_secret
        rule.webhook_secret = secret.get_secret_value() if secret is not None else None
    rule.updated_at = now
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, rule_id: int, now: datetime) -> bool:
    """Delete a rule; its pending deliveries are cancelled, its open incident is closed
    (`resolved`, `details.closed`: the rule was deleted) and its counts are dropped. Its
    alerts stay (history)."""
    result = await session.execute(delete(AlertRule).where(AlertRule.id == rule_id))
    if not getattr(result, "rowcount", 0):
        return False
    await delete_rule_counts(session, rule_id)
    await close_rule_alerts(session, rule_id, now)
    await cancel_rule_deliveries(session, rule_id, now)
    return True
