"""Alert rules (issue 14): what a valid rule is, the keyword matcher, the explanation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sentiment_platform.rule_spec import (
    RuleSpec,
    is_masked_url,
    mask_webhook_url,
    rule_alert_type,
)
from sentiment_platform.services.alerting.explain import explain, terms_of
from sentiment_platform.services.alerting.matcher import Matcher, RuleFilter
from sentiment_platform.services.alerting.webhooks import sign, verify


def bad_field(**body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        RuleSpec.model_validate({"name": "r", "threshold": 0.5} | body)
    (error,) = caught.value.errors()
    return str(error["loc"][0])


def test_a_valid_rule_is_normalised() -> None:
    rule = RuleSpec.model_validate(
        {"name": " delays ", "keywords": [" delay", '"late  delivery"', "DELAY"], "threshold": 0.5}
    )
    assert rule.name == "delays"
    assert rule.keywords == ["delay", "late delivery"]  # quotes dropped, duplicates folded
    assert rule.metric == "negative_share" and rule.window_minutes == 5 and rule.min_posts == 20


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": 0}, "threshold"),
        ({"metric": "volume", "threshold": 0.5}, "threshold"),
        ({"metric": "volume", "threshold": 5000}, "threshold"),
        ({"metric": "emotion_share"}, "emotion"),
        ({"metric": "emotion_share", "emotion": "disgust"}, "emotion"),
        ({"emotion": "joy"}, "emotion"),
        ({"keywords": ["x"] * 51}, "keywords"),
        ({"keywords": ["x" * 101]}, "keywords"),
        ({"keywords": ["  !! "]}, "keywords"),
        ({"keywords": ["a\x00b"]}, "keywords"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"window_minutes": 1441}, "window_minutes"),
        ({"min_posts": 0}, "min_posts"),
        ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
        ({"webhook_url": "https://user:pw@example.com/x"}, "webhook_url"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_rules_name_the_field(body: dict[str, object], field: str) -> None:
    assert bad_field(**body) == field


def test_emotion_and_volume_rules() -> None:
    emotion = RuleSpec.model_validate(
        {"name": "r", "metric": "emotion_share", "emotion": "anger", "threshold": 0.3}
    )
    assert emotion.emotion == "anger"
    volume = RuleSpec.model_validate({"name": "r", "metric": "volume", "threshold": 3})
    assert volume.threshold == 3.0
    assert rule_alert_type(0) == "negative_spike" and rule_alert_type(7) == "rule:7"


# --- the matcher ---------------------------------------------------------------------------


@pytest.fixture
def matcher() -> Matcher:
    return Matcher.build(
        [
            RuleFilter(1, ("delay",)),
            RuleFilter(2, ("late delivery", "Delivery driver")),
            RuleFilter(3, ("#acme",), source="twitter"),
            RuleFilter(4, ()),
            RuleFilter(5, (), source="reddit"),
            RuleFilter(6, ('"c++"', "don't")),
        ]
    )


@pytest.mark.parametrize(
    ("text", "source", "expected"),
    [
        ("Another DELAY today!", "web", {1, 4}),
        ("delays everywhere", "web", {4}),  # whole words only
        ("relay", "web", {4}),
        ("#delay", "web", {1, 4}),
        ("so LATE   delivery driver again", "web", {2, 4}),  # overlapping phrases
        ("late, delivery", "web", {4}),  # a phrase is consecutive words
        ("love #acme", "twitter", {3, 4}),
        ("love #acme", "web", {4}),  # source filter
        ("love acme", "twitter", {4}),
        ("anything", "reddit", {4, 5}),
        ("I write C++ and I don't mind", "web", {4, 6}),
    ],
)
def test_matcher_finds_every_rule_of_a_post(
    matcher: Matcher, text: str, source: str, expected: set[int]
) -> None:
    assert matcher.match(text, source) == expected


def test_matcher_over_many_posts_and_no_rules() -> None:
    matcher = Matcher.build([RuleFilter(9, ("delay",))])
    assert matcher.match_many([("delay", "a"), ("fine", "a")]) == [frozenset({9}), frozenset()]
    assert Matcher.build([]).match("delay", "a") == frozenset()
    assert len(matcher) == 1 and matcher.rule_ids == {9}


# --- the explanation -----------------------------------------------------------------------


def test_terms_drop_urls_handles_stop_words_and_numbers() -> None:
    text = "@acme_help the delay is 45 minutes https://t.co/xyz www.acme.com #late"
    assert terms_of(text) == {"delay", "minutes", "late"}


def test_delay_comes_first_when_the_negatives_mention_delays() -> None:
    moods = ["awful", "terrible", "bad", "poor", "slow", "angry"]
    window = [(f"n{i}", f"Flight {i}: a delay again, {moods[i % 6]} service") for i in range(30)]
    window += [(f"m{i}", "the app crashed") for i in range(2)]
    background = [(f"b{i}", "Flight was fine, nice service and crew") for i in range(200)]
    background += [(f"d{i}", "a small delay, no problem") for i in range(3)]
    result = explain(window, background)
    assert result.terms[0].term == "delay"
    assert result.terms[0].count == 30 and result.terms[0].background_count == 3
    assert "awful" in [t.term for t in result.terms]  # five posts: above the minimum
    assert "service" not in [t.term for t in result.terms[:3]]  # as common in the background
    assert "crashed" not in [t.term for t in result.terms]  # under the minimum count
    assert len(result.examples) == 5 and all(e.startswith("n") for e in result.examples)
    details = result.as_details()
    assert details["terms"][0]["term"] == "delay" and details["examples"] == result.examples


def test_explanation_without_background_ranks_by_count_and_is_bounded() -> None:
    window = [(f"p{i}", "refund refund please" if i % 2 else "refund delay") for i in range(50)]
    result = explain(window, [], max_posts=10)
    assert result.window_posts == 10 and result.terms[0].term == "refund"
    assert explain([], []).terms == [] and explain([], []).examples == []
    assert explain([("p", "delay")], [], min_count=1).terms[0].term == "delay"


def test_signature_is_githubs() -> None:
    # Known answer: HMAC-SHA256("It's a Secret to Everybody", "Hello, World!")
    body, secret = b"Hello, World!", "It's a Secret to Everybody"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(body, secret) == expected and verify(body, secret, expected)
    assert not verify(body + b" ", secret, expected)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/…"),
        ("http://127.0.0.1:9/hook?token=abc#frag", "http://127.0.0.1:9/…"),
        ("https://example.com", "https://example.com/…"),
        ("https://example.com/?key=1", "https://example.com/…"),
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/…"),
        ("https://example.com/…", "https://example.com/…"),  # a mask masks to itself
    ],
)
def test_a_webhook_url_is_masked_to_scheme_and_host(url: str, masked: str) -> None:
    assert mask_webhook_url(url) == masked
    assert is_masked_url(masked)
    assert is_masked_url(url) == (url == masked)
