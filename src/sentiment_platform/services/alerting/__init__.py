"""Alerting in one place: the policy (pure), the rule matcher and its counts, the monitor that
evaluates the built-in alert and the rules, explanations, and webhook notifications."""
