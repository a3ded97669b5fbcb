"""One rule's step of a check: measure its window from `rule_counts`, and write what the
policy decided (the incident's row, its explanation, its webhook notification).

The window is the rule's last `window_minutes` minutes of ANALYSIS time, as minute counts:
the current (partial) minute and the `window_minutes − 1` before it. The metric:

- `negative_share`: negative / total. With `ALERT_ON=estimated` the share is estimated
  (services/alerting/estimated.py): from the random labels as the metrics estimate it where
  the model scoring posts has MIN_ESTIMATE_LABELS of them, else the shipped confusion matrix
  undone (label shift assumed), else counted; the details say which.
- `emotion_share`: the rule's emotion / total.
- `volume`: the window's count / the rule's average count per window over the 24 hours
  before the window (`store.rule_volume_baseline`; at least 1, so a quiet rule is compared
  with one post a window); no verdict with less than one window of history.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sentiment_platform import store
from sentiment_platform.domain import AlertItem, Sentiment
from sentiment_platform.models.alerting import Alert
from sentiment_platform.rule_spec import RuleView, rule_alert_type
from sentiment_platform.services.alerting import webhooks
from sentiment_platform.services.alerting.details import explain_alert
from sentiment_platform.services.alerting.estimated import Estimator
from sentiment_platform.services.alerting.policy import (
    Action,
    AlertState,
    Decision,
    Policy,
    Sample,
    Severity,
    State,
)

MIN_BASELINE = 1.0  # posts per window a volume rule's count is compared with, at least


@dataclass(frozen=True, slots=True)
class Measured:
    sample: Sample
    facts: dict[str, Any] = field(default_factory=dict)  # what the alert's details record


def window_of(rule: RuleView, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the minutes counted: the current one and `window − 1` before it."""
    end = store.floor_minute(now) + timedelta(minutes=1)
    return end - timedelta(minutes=rule.window_minutes), end


async def measure(
    session: AsyncSession,
    rule: RuleView,
    now: datetime,
    policy: Policy,
    estimator: Estimator | None,
) -> Measured:
    start, end = window_of(rule, now)
    counts = await store.rule_window(session, rule.id, start, end)
    total = counts.total
    facts: dict[str, Any] = {
        "metric": rule.metric,
        "total": total,
        "threshold": policy.threshold,
        "recovery_threshold": policy.recovery_threshold,
        "window_minutes": rule.window_minutes,
    }
    if rule.metric == "volume":
        baseline = await store.rule_volume_baseline(session, rule.id, rule.window_minutes, start)
        facts["baseline"] = None if baseline is None else round(baseline, 3)
        if baseline is None:
            return Measured(Sample(0, 0), facts)  # no history yet: no verdict
        ratio = total / max(baseline, MIN_BASELINE)
        return Measured(Sample(total, total, ratio), facts | {"share": round(ratio, 4)})
    if rule.metric == "emotion_share":
        hits = counts.emotions.get(str(rule.emotion), 0)
        sample = Sample(total, hits)
        return Measured(sample, facts | {"emotion": str(rule.emotion), "count": hits})
    negative = counts.sentiments.get(Sentiment.NEGATIVE.value, 0)
    sample = Sample(total, negative)
    facts |= {"negative": negative}
    if estimator is not None and total:
        value, how = estimator.negative_share(counts.sentiments)
        facts |= how | {"counted_share": round(sample.share, 4)}
        if value is not None:
            sample = replace(sample, value=value)
    return Measured(sample, facts | {"share": round(sample.share, 4)})


def _label(rule: RuleView) -> str:
    if rule.metric == "emotion_share":
        return f"{str(rule.emotion).capitalize()} share"
    return "Negative share"


def firing_message(rule: RuleView, measured: Measured, policy: Policy) -> str:
    sample, minutes = measured.sample, rule.window_minutes
    if rule.metric == "volume":
        return (
            f"{sample.total} posts over the last {minutes} min: {sample.share:.1f}× the 24 h "
            f"average ({measured.facts['baseline']:g} per window) exceeds {policy.threshold:g}×"
        )
    return (
        f"{_label(rule)} {sample.share:.0%} over the last {minutes} min exceeds "
        f"{policy.threshold:.0%} ({sample.negative} of {sample.total} posts)"
    )


def resolved_message(rule: RuleView, sample: Sample, policy: Policy, peak: float) -> str:
    if rule.metric == "volume":
        return (
            f"Resolved: {sample.total} posts over the last {rule.window_minutes} min, "
            f"{sample.share:.1f}× the 24 h average (below {policy.recovery_threshold:g}×; "
            f"peak {peak:.1f}×)"
        )
    return (
        f"Resolved: {_label(rule).lower()} back to {sample.share:.0%} "
        f"(below {policy.recovery_threshold:.0%}; peak {peak:.0%})"
    )


async def record(
    session: AsyncSession,
    rule: RuleView,
    policy: Policy,
    before: AlertState,
    decision: Decision,
    measured: Measured,
    now: datetime,
) -> tuple[Alert | None, Decision]:
    """Write the incident's row for an action, and queue its notification (same transaction):
    the row to announce (None: nothing to say) and the decision as stored (a fired incident
    carries its row id; one that met another monitor's firing row adopts it)."""
    after, action = decision.state, decision.action
    if action is None:
        return None, decision
    alert: Alert | None
    if action is Action.FIRE:
        details = measured.facts | incident_facts(after)
        negative_only = rule.metric == "negative_share"  # a spike or an emotion: all its posts
        _, end = window_of(rule, now)  # the posts of the minutes counted
        details |= await explain_alert(session, rule, end, negative_only=negative_only)
        alert = await store.insert_firing_alert(
            session,
            alert_type=rule_alert_type(rule.id),
            severity=str(after.severity),
            message=firing_message(rule, measured, policy),
            details=details,
            created_at=now,
            rule_id=rule.id,
            rule_name=rule.name,
        )
        if alert is None:  # another monitor's incident is open: adopt it (it announced it)
            existing = await store.firing_alert(session, rule_alert_type(rule.id))
            return None, Decision(state_of(existing) if existing is not None else AlertState())
        decision = Decision(replace(after, alert_id=alert.id), action)
    elif before.alert_id is None:
        return None, decision
    elif action is Action.RENOTIFY:
        alert = await store.update_alert(
            session,
            before.alert_id,
            severity=str(after.severity),
            message=firing_message(rule, measured, policy),
            details=measured.facts | incident_facts(after),
        )
    else:
        alert = await store.update_alert(
            session,
            before.alert_id,
            state=State.RESOLVED.value,
            resolved_at=now,
            message=resolved_message(rule, measured.sample, policy, before.peak_share),
            details={"resolved_share": measured.facts.get("share")},
        )
    if alert is not None:
        item = AlertItem.model_validate(alert)
        await webhooks.enqueue(session, item, str(action), rule.webhook_url, now)
    return alert, decision


def incident_facts(state: AlertState) -> dict[str, Any]:
    return {
        "peak_share": round(state.peak_share, 4),
        "notifications": state.notifications,
        "notified_at": state.notified_at.isoformat() if state.notified_at else None,
    }


def state_of(alert: Alert) -> AlertState:
    """The firing state an incident's row records."""
    details = alert.details or {}
    notified = details.get("notified_at")
    return AlertState(
        State.FIRING,
        since=alert.created_at,
        notified_at=datetime.fromisoformat(notified) if notified else alert.created_at,
        severity=Severity(alert.severity),
        peak_share=float(details.get("peak_share", 0.0)),
        notifications=int(details.get("notifications", 1)),
        alert_id=alert.id,
    )
