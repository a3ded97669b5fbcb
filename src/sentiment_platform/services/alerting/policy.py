"""The negative-spike alert as a pure state machine: no I/O, no clock of its own.

`evaluate(state, sample, now, policy)` is a pure function, so every rule is tested with a
fake clock. States: `ok` → `pending` (share above the threshold, hold time not yet over) →
`firing` → `resolved` (→ `pending`/`firing` on the next spike). A window with fewer than
`ALERT_MIN_POSTS` posts gives no verdict: the state stays as it is. A firing alert resolves
only below the recovery threshold (hysteresis; `Settings.effective_alert_recovery_threshold`),
so a share hovering at the threshold does not flap. Severity is the incident's peak:
`critical` once the share reached threshold + `ALERT_CRITICAL_MARGIN`, else `warning`; an
escalation to `critical` is announced at once, not at the next re-notification.

Every rule runs this machine with its own `Policy` (`Policy.for_rule`) over its own value:
the share for `negative_share` / `emotion_share`, and for `volume` the ratio of the window's
count to the rule's 24 h average per window (threshold: the rule's factor; it resolves below
`factor × (1 − VOLUME_RECOVERY_BAND)`; `critical` from twice the factor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sentiment_platform.config import DEFAULT_RECOVERY_GAP, Settings
from sentiment_platform.rule_spec import BUILTIN_ALERT_TYPE, BUILTIN_RULE_ID, RuleView

ALERT_TYPE = BUILTIN_ALERT_TYPE  # the built-in rule's
VOLUME_RECOVERY_BAND = 0.1  # a volume alert resolves 10 % under its factor × the baseline


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class Action(StrEnum):
    FIRE = "fire"
    RENOTIFY = "renotify"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class Policy:
    threshold: float
    recovery_threshold: float
    min_posts: int
    hold: timedelta
    repeat: timedelta
    critical_margin: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The rules as configured; `Settings` has already checked recovery < threshold."""
        return cls(
            threshold=settings.alert_threshold,
            recovery_threshold=settings.effective_alert_recovery_threshold,
            min_posts=settings.alert_min_posts,
            hold=timedelta(seconds=settings.alert_hold_seconds),
            repeat=timedelta(minutes=settings.alert_repeat_minutes),
            critical_margin=settings.alert_critical_margin,
        )

    @classmethod
    def for_rule(cls, rule: RuleView, settings: Settings) -> Policy:
        """A rule's thresholds; hold, repeat and (for shares) the critical margin are the
        deployment's `ALERT_*` settings. The built-in rule is `from_settings`."""
        if rule.id == BUILTIN_RULE_ID:
            return cls.from_settings(settings)
        common = cls.from_settings(settings)
        if rule.metric == "volume":
            recovery = rule.threshold * (1 - VOLUME_RECOVERY_BAND)
            margin = rule.threshold  # critical at twice the factor
        else:
            recovery = rule.threshold - min(DEFAULT_RECOVERY_GAP, rule.threshold / 2)
            margin = common.critical_margin
        return replace(
            common,
            threshold=rule.threshold,
            recovery_threshold=round(recovery, 6),
            min_posts=rule.min_posts,
            critical_margin=margin,
        )

    def severity(self, share: float) -> Severity:
        if share >= round(self.threshold + self.critical_margin, 9):  # 0.4 + 0.2 is 0.6
            return Severity.CRITICAL
        return Severity.WARNING


@dataclass(frozen=True, slots=True)
class Sample:
    """Analysed posts in the window, how many of them count toward the metric (negative, or
    of the rule's emotion), and the metric's value when it is not that share (a volume
    ratio, or an estimated share: `ALERT_ON=estimated`)."""

    total: int
    negative: int
    value: float | None = None

    @property
    def share(self) -> float:
        """The value compared with the threshold."""
        if self.value is not None:
            return self.value
        return self.negative / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class AlertState:
    state: State = State.OK
    since: datetime | None = None  # pending: first seen above; firing: fired; resolved: when
    notified_at: datetime | None = None  # firing: last fire or re-notification
    severity: Severity | None = None  # firing: the incident's peak severity
    peak_share: float = 0.0
    notifications: int = 0
    alert_id: int | None = None  # firing: the incident's row, once stored


@dataclass(frozen=True, slots=True)
class Decision:
    state: AlertState
    action: Action | None = None


def _worse(a: Severity | None, b: Severity) -> Severity:
    return Severity.CRITICAL if Severity.CRITICAL in (a, b) else Severity.WARNING


def evaluate(state: AlertState, sample: Sample, now: datetime, policy: Policy) -> Decision:
    """The next state after one evaluation, and what to announce (if anything)."""
    if sample.total < policy.min_posts:
        return Decision(state)
    share = sample.share
    if state.state is State.FIRING:
        if share < policy.recovery_threshold:
            return Decision(AlertState(State.RESOLVED, since=now), Action.RESOLVE)
        firing = replace(
            state,
            severity=_worse(state.severity, policy.severity(share)),
            peak_share=max(state.peak_share, share),
        )
        escalated = firing.severity is not state.severity  # warning -> critical: say so now
        if escalated or state.notified_at is None or now - state.notified_at >= policy.repeat:
            notified = replace(firing, notified_at=now, notifications=state.notifications + 1)
            return Decision(notified, Action.RENOTIFY)
        return Decision(firing)
    if share <= policy.threshold:
        if state.state is State.PENDING:
            return Decision(AlertState(State.OK))
        return Decision(state)
    since = state.since if state.state is State.PENDING and state.since is not None else now
    if now - since >= policy.hold:
        fired = AlertState(
            State.FIRING,
            since=now,
            notified_at=now,
            severity=policy.severity(share),
            peak_share=share,
            notifications=1,
        )
        return Decision(fired, Action.FIRE)
    return Decision(AlertState(State.PENDING, since=since))
