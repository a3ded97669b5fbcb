"""Alert rules' services (issue 14): the keyword matcher (`matcher`), the explanation of an
alert (`explain`, pure) and that explanation read from the store (`details`)."""

from sentiment_platform.services.rules.details import explain_alert
from sentiment_platform.services.rules.explain import Explanation, Term, explain
from sentiment_platform.services.rules.matcher import EMPTY, Matcher, RuleFilter

__all__ = ["EMPTY", "Explanation", "Matcher", "RuleFilter", "Term", "explain", "explain_alert"]
