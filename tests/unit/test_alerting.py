"""The alert state machine as pure functions, driven by a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sentiment_platform.config import Settings
from sentiment_platform.services.alerting.policy import (
    Action,
    AlertState,
    Decision,
    Policy,
    Sample,
    Severity,
    State,
    evaluate,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def policy(**overrides: object) -> Policy:
    """The defaults from Settings (threshold 0.4, 20 posts, no hold), with overrides."""
    settings = Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
    return Policy.from_settings(settings)


def share(percent: int, total: int = 100) -> Sample:
    return Sample(total=total, negative=total * percent // 100)


class Clock:
    """Steps a state through samples, `step` seconds apart."""

    def __init__(self, rules: Policy, step_s: float = 5.0) -> None:
        self.rules = rules
        self.step = timedelta(seconds=step_s)
        self.now = T0
        self.state = AlertState()

    def feed(self, sample: Sample) -> Decision:
        decision = evaluate(self.state, sample, self.now, self.rules)
        self.state = decision.state
        self.now += self.step
        return decision

    def actions(self, *samples: Sample) -> list[Action | None]:
        return [self.feed(sample).action for sample in samples]


def test_defaults_from_settings() -> None:
    rules = policy()
    assert rules.threshold == 0.4
    assert rules.recovery_threshold == pytest.approx(0.35)
    assert rules.min_posts == 20 and rules.hold == timedelta(0)


def test_recovery_must_be_below_threshold() -> None:
    with pytest.raises(ValueError, match="ALERT_RECOVERY_THRESHOLD"):
        policy(alert_threshold=0.4, alert_recovery_threshold=0.4)


def test_below_threshold_stays_ok() -> None:
    clock = Clock(policy())
    assert clock.actions(share(10), share(40), share(0)) == [None, None, None]
    assert clock.state.state is State.OK


def test_fires_at_once_above_threshold_with_no_hold() -> None:
    clock = Clock(policy())
    decision = clock.feed(share(41))
    assert decision.action is Action.FIRE
    assert decision.state.state is State.FIRING
    assert decision.state.since == T0 and decision.state.notified_at == T0


def test_too_few_posts_is_no_verdict() -> None:
    clock = Clock(policy(alert_min_posts=20))
    assert clock.actions(Sample(total=19, negative=19)) == [None]
    assert clock.state.state is State.OK
    assert clock.actions(Sample(total=20, negative=19)) == [Action.FIRE]
    # While firing, a thin window says nothing either way: no resolve on 0 of 5.
    assert clock.actions(Sample(total=5, negative=0)) == [None]
    assert clock.state.state is State.FIRING


def test_hold_time_keeps_it_pending_until_it_has_lasted() -> None:
    clock = Clock(policy(alert_hold_seconds=12), step_s=5)
    assert clock.actions(share(50), share(50), share(50)) == [None, None, None]  # t=0, 5, 10
    assert clock.state.state is State.PENDING and clock.state.since == T0
    assert clock.actions(share(50)) == [Action.FIRE]  # t=15 >= 12 s after the first sighting


def test_pending_falls_back_to_ok_and_the_hold_restarts() -> None:
    clock = Clock(policy(alert_hold_seconds=10), step_s=5)
    assert clock.actions(share(50), share(30)) == [None, None]
    assert clock.state.state is State.OK
    assert clock.actions(share(50), share(50), share(50)) == [None, None, Action.FIRE]


def test_hysteresis_resolves_only_below_the_recovery_threshold() -> None:
    clock = Clock(policy(alert_threshold=0.4))  # recovery 0.35
    assert clock.actions(share(45)) == [Action.FIRE]
    # Back under the threshold but not under recovery: still firing, no flapping.
    assert clock.actions(share(39), share(36), share(35), share(41)) == [None] * 4
    assert clock.state.state is State.FIRING
    decision = clock.feed(share(34))
    assert decision.action is Action.RESOLVE
    assert decision.state.state is State.RESOLVED


def test_explicit_recovery_threshold() -> None:
    clock = Clock(policy(alert_threshold=0.4, alert_recovery_threshold=0.2))
    assert clock.actions(share(50), share(25), share(19)) == [Action.FIRE, None, Action.RESOLVE]


def test_one_incident_renotified_at_most_every_repeat_interval() -> None:
    clock = Clock(policy(alert_repeat_minutes=1), step_s=20)
    # t = 0 fire; 20, 40 quiet; 60 re-notify; 80, 100 quiet; 120 re-notify.
    assert clock.actions(*[share(60)] * 7) == [
        Action.FIRE,
        None,
        None,
        Action.RENOTIFY,
        None,
        None,
        Action.RENOTIFY,
    ]
    assert clock.state.notifications == 3
    assert clock.state.since == T0  # still the same incident


def test_a_new_spike_after_resolve_fires_a_new_incident() -> None:
    clock = Clock(policy())
    assert clock.actions(share(50), share(10), share(10), share(50)) == [
        Action.FIRE,
        Action.RESOLVE,
        None,
        Action.FIRE,
    ]
    assert clock.state.notifications == 1 and clock.state.peak_share == 0.5


@pytest.mark.parametrize(
    ("percent", "severity"),
    [
        (41, Severity.WARNING),
        (59, Severity.WARNING),
        (60, Severity.CRITICAL),
        (95, Severity.CRITICAL),
    ],
)
def test_severity_from_distance_above_threshold(percent: int, severity: Severity) -> None:
    clock = Clock(policy(alert_threshold=0.4, alert_critical_margin=0.2))
    assert clock.feed(share(percent)).state.severity is severity


def test_severity_is_the_incident_peak_and_an_escalation_is_announced_at_once() -> None:
    clock = Clock(policy(alert_repeat_minutes=15), step_s=30)
    assert clock.feed(share(45)).state.severity is Severity.WARNING
    escalated = clock.feed(share(70))
    assert escalated.action is Action.RENOTIFY  # not 15 minutes later
    assert escalated.state.severity is Severity.CRITICAL
    calmer = clock.feed(share(45))
    assert calmer.action is None  # no news: still the same critical incident
    assert calmer.state.severity is Severity.CRITICAL
    assert calmer.state.peak_share == pytest.approx(0.7)


def test_a_tiny_threshold_keeps_a_proportional_recovery_band() -> None:
    rules = policy(alert_threshold=0.04)
    assert 0 < rules.recovery_threshold < 0.04
