"""What the worker counts per rule (`rule_hits`, `stored_pairs`, `RulesCache`) and each
rule's policy (`Policy.for_rule`), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sentiment_platform.config import Settings
from sentiment_platform.domain import Analysis, Emotion, Post, PostMarks, Sentiment
from sentiment_platform.rule_spec import RuleView
from sentiment_platform.services.alerting.matcher import Matcher, RuleFilter
from sentiment_platform.services.alerting.policy import (
    Action,
    AlertState,
    Policy,
    Sample,
    Severity,
    evaluate,
)
from sentiment_platform.services.alerting.rule_hits import rule_hits, stored_pairs
from sentiment_platform.store import RuleHit, aggregate_hits

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def pair(post_id: str, text: str, sentiment: Sentiment, at: datetime, source: str = "x"):
    post = Post(post_id=post_id, source=source, content=text, created_at=at)
    return post, Analysis(post_id, sentiment, 0.9, Emotion.ANGER, 0.8, "m", at)


def test_rule_zero_counts_every_post_and_rules_the_posts_they_match() -> None:
    matcher = Matcher.build([RuleFilter(1, ("delay",)), RuleFilter(2, ("refund",), "shop")])
    pairs = [
        pair("a", "Another DELAY!", Sentiment.NEGATIVE, T0 + timedelta(seconds=5)),
        pair("b", "delay and refund", Sentiment.NEGATIVE, T0 + timedelta(seconds=59)),
        pair("c", "refund please", Sentiment.NEUTRAL, T0 + timedelta(seconds=61), "shop"),
        pair("d", "delays are fine", Sentiment.POSITIVE, T0),
    ]
    hits = rule_hits(matcher, pairs)
    minute, next_minute = T0, T0 + timedelta(minutes=1)
    assert hits == [
        RuleHit(0, minute, "negative", "anger", 2),
        RuleHit(0, minute, "positive", "anger", 1),
        RuleHit(0, next_minute, "neutral", "anger", 1),
        RuleHit(1, minute, "negative", "anger", 2),
        RuleHit(2, next_minute, "neutral", "anger", 1),  # "b" is not from "shop"
    ]
    assert hits == sorted(hits)  # the lock order of add_rule_counts


def test_a_unique_rule_skips_copies_a_language_rule_other_languages_rule_zero_neither() -> None:
    matcher = Matcher.build(
        [
            RuleFilter(1, ("delay",), unique=True),
            RuleFilter(2, ("delay",), language="fr"),
            RuleFilter(3, ("delay",)),
        ]
    )
    pairs = [
        pair("a", "delay again", Sentiment.NEGATIVE, T0),
        pair("b", "RT @x: delay again", Sentiment.NEGATIVE, T0),
        pair("c", "encore un delay", Sentiment.NEGATIVE, T0),
        pair("d", "delay before detection", Sentiment.NEGATIVE, T0),
    ]
    marks = {
        "a": PostMarks("en"),
        "b": PostMarks("en", duplicate_of="a"),
        "c": PostMarks("fr"),
    }  # "d": stored before languages were detected
    counted = {(hit.rule_id): hit.count for hit in rule_hits(matcher, pairs, marks)}
    assert counted == {0: 4, 1: 3, 2: 1, 3: 4}


def test_only_the_stored_posts_are_counted_once() -> None:
    a, b = pair("a", "x", Sentiment.NEGATIVE, T0), pair("b", "x", Sentiment.NEGATIVE, T0)
    posts, analyses = [a[0], b[0], a[0]], [a[1], b[1], a[1]]
    assert stored_pairs(posts, analyses, {"a"}) == [a]


def test_aggregate_sums_and_sorts() -> None:
    later = T0 + timedelta(minutes=1, seconds=3)
    hits = [RuleHit(2, later, "negative", "anger"), RuleHit(1, T0, "negative", "anger", 2)]
    hits += [RuleHit(2, later.replace(second=0), "negative", "anger", 4)]
    assert aggregate_hits(hits) == [
        RuleHit(1, T0, "negative", "anger", 2),
        RuleHit(2, later.replace(second=0), "negative", "anger", 5),
    ]


def rule(metric: str, threshold: float, **extra: object) -> RuleView:
    return RuleView.model_validate(
        {"id": 7, "name": "r", "keywords": [], "source": None, "metric": metric}
        | {"emotion": None, "threshold": threshold, "window_minutes": 5, "min_posts": 10}
        | {"webhook_url": None, "has_secret": False}
        | extra
    )


def test_a_volume_rule_resolves_under_its_band_and_is_critical_at_twice_its_factor() -> None:
    policy = Policy.for_rule(rule("volume", 3.0), Settings(_env_file=None))  # type: ignore[call-arg]
    assert policy.threshold == 3.0 and policy.recovery_threshold == pytest.approx(2.7)
    assert policy.min_posts == 10 and policy.critical_margin == 3.0
    fired = evaluate(AlertState(), Sample(40, 40, 4.0), T0, policy)
    assert fired.action is Action.FIRE and fired.state.severity is Severity.WARNING
    held = evaluate(fired.state, Sample(30, 30, 2.8), T0 + timedelta(seconds=5), policy)
    assert held.action is None  # under the factor, above the band: still firing
    escalated = evaluate(held.state, Sample(80, 80, 6.0), T0 + timedelta(seconds=10), policy)
    assert escalated.action is Action.RENOTIFY and escalated.state.severity is Severity.CRITICAL
    resolved = evaluate(escalated.state, Sample(20, 20, 2.6), T0 + timedelta(seconds=15), policy)
    assert resolved.action is Action.RESOLVE


def test_a_share_rule_uses_its_own_threshold_and_min_posts() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    policy = Policy.for_rule(rule("negative_share", 0.5), settings)
    assert (policy.threshold, policy.recovery_threshold, policy.min_posts) == (0.5, 0.45, 10)
    builtin = Policy.for_rule(rule("negative_share", 0.5, id=0), settings)
    assert builtin == Policy.from_settings(settings)
