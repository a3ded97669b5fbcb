"""Alert rules, an alert's detail, the webhook delivery queue, and the posts an explanation
reads (issue 14). The caller owns the transaction.

The built-in rule has no row: `builtin_rule(settings)` shows it as id 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform.config import Settings
from sentiment_platform.domain import PostView, Sentiment
from sentiment_platform.models.database import (
    Alert,
    AlertRule,
    RuleCount,
    SentimentAnalysis,
    SocialMediaPost,
    WebhookDelivery,
)
from sentiment_platform.rule_spec import BUILTIN_RULE_ID, BUILTIN_RULE_NAME, RuleSpec, RuleView

# --- rules ---------------------------------------------------------------------------------


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
    one (the client cannot read it back), an explicit null clears it."""
    for name, value in _columns(spec).items():
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
    await session.execute(delete(RuleCount).where(RuleCount.rule_id == rule_id))
    await close_rule_alerts(session, rule_id, now)
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.rule_id == rule_id, WebhookDelivery.done.is_(False))
        .values(done=True, error="cancelled: the rule was deleted", next_attempt_at=now)
    )
    return True


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


# --- an alert's detail ---------------------------------------------------------------------


def rule_filter(rule_id: int) -> ColumnElement[bool]:
    """Alerts of one rule; rows from before rules (rule_id NULL) are the built-in rule's."""
    if rule_id == BUILTIN_RULE_ID:
        return or_(Alert.rule_id == BUILTIN_RULE_ID, Alert.rule_id.is_(None))
    return Alert.rule_id == rule_id


async def get_alert(session: AsyncSession, alert_id: int) -> Alert | None:
    return await session.get(Alert, alert_id)


async def alert_deliveries(session: AsyncSession, alert_id: int) -> list[WebhookDelivery]:
    rows = await session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.alert_id == alert_id)
        .order_by(WebhookDelivery.id)
    )
    return list(rows)


async def posts_by_ids(session: AsyncSession, post_ids: Sequence[str]) -> list[PostView]:
    """The posts with these ids (with their analyses), in the order asked; missing ones left
    out (retention may have removed them)."""
    if not post_ids:
        return []
    rows = await session.execute(
        select(SocialMediaPost, SentimentAnalysis)
        .outerjoin(SentimentAnalysis, SentimentAnalysis.post_ref == SocialMediaPost.id)
        .where(SocialMediaPost.post_id.in_(list(post_ids)))
    )
    found = {post.post_id: PostView.of(post, analysis) for post, analysis in rows}
    return [found[post_id] for post_id in post_ids if post_id in found]


# --- the webhook delivery queue ------------------------------------------------------------


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


# --- the posts an explanation reads --------------------------------------------------------


def _like(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def rule_posts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    keywords: Sequence[str],
    source: str | None,
    negative_only: bool,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(post_id, content, source) of posts analysed in [start, end) that may match a rule,
    newest first, at most `limit`: a keyword pre-filter (ILIKE) the caller narrows to whole
    words with the matcher."""
    query = (
        select(SocialMediaPost.post_id, SocialMediaPost.content, SocialMediaPost.source)
        .join(SentimentAnalysis, SentimentAnalysis.post_ref == SocialMediaPost.id)
        .where(SentimentAnalysis.analyzed_at >= start, SentimentAnalysis.analyzed_at < end)
    )
    if negative_only:
        query = query.where(SentimentAnalysis.sentiment == Sentiment.NEGATIVE.value)
    if source is not None:
        query = query.where(SocialMediaPost.source == source)
    if keywords:
        query = query.where(
            or_(*(SocialMediaPost.content.ilike(_like(k), escape="\\") for k in keywords))
        )
    rows = await session.execute(query.order_by(SentimentAnalysis.analyzed_at.desc()).limit(limit))
    return [(post_id, content, source_) for post_id, content, source_ in rows]
