"""Alert rules' services (issue 14): the keyword matcher (`matcher`), the explanation of an
alert (`explain`, pure), that explanation read from the store (`details`), and the
per-rule counts the worker adds for each saved batch (`counting`)."""

from sentiment_platform.services.rules.counting import RulesCache, rule_hits, stored_pairs
from sentiment_platform.services.rules.details import explain_alert
from sentiment_platform.services.rules.explain import Explanation, Term, explain
from sentiment_platform.services.rules.matcher import EMPTY, Matcher, RuleFilter

__all__ = [
    "EMPTY",
    "Explanation",
    "Matcher",
    "RuleFilter",
    "RulesCache",
    "Term",
    "explain",
    "explain_alert",
    "rule_hits",
    "stored_pairs",
]
