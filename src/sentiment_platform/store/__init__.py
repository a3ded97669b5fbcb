"""The store: everything the platform reads from and writes to the database, as plain
functions over an `AsyncSession`. The caller owns the transaction (one unit of work). The
reads a request makes alone take a `Reader`: that session, or a bare connection.

- `posts`: idempotent batch writes of posts and analyses, and the paged reads.
- `alerts`: the alert pages and the monitor's SQL.
- `rules`: alert rules, an alert's detail, the webhook delivery queue (issue 14).
- `rule_counts`: per-rule, per-minute counts the monitor evaluates rules from.
- `rollups`: counts per minute / hour / day × source × labels, kept by `save_batch`.
"""

from sentiment_platform.store.alert_rules import (
    RulesVersion,
    alert_deliveries,
    builtin_rule,
    close_rule_alerts,
    count_rules,
    create_rule,
    delete_rule,
    due_deliveries,
    enqueue_delivery,
    get_alert,
    get_rule,
    list_rules,
    posts_by_ids,
    rule_posts,
    rule_view,
    rules_version,
    update_rule,
)
from sentiment_platform.store.alerts import (
    FIRING,
    firing_alert,
    firing_alerts,
    insert_firing_alert,
    list_alerts,
    update_alert,
)
from sentiment_platform.store.posts import (
    PostFilter,
    PostItem,
    count_matches,
    decode_cursor,
    encode_cursor,
    posts_page,
    save_batch,
    stream_posts,
)
from sentiment_platform.store.prepared import Reader
from sentiment_platform.store.rule_counts import (
    BASELINE,
    RuleHit,
    WindowCounts,
    add_rule_counts,
    aggregate_hits,
    floor_minute,
    prune_rule_counts,
    rule_volume_baseline,
    rule_window,
)

__all__ = [
    "BASELINE",
    "FIRING",
    "PostFilter",
    "PostItem",
    "Reader",
    "count_matches",
    "RuleHit",
    "WindowCounts",
    "add_rule_counts",
    "aggregate_hits",
    "close_rule_alerts",
    "firing_alerts",
    "floor_minute",
    "prune_rule_counts",
    "rule_volume_baseline",
    "rule_window",
    "alert_deliveries",
    "builtin_rule",
    "count_rules",
    "create_rule",
    "delete_rule",
    "due_deliveries",
    "enqueue_delivery",
    "decode_cursor",
    "encode_cursor",
    "firing_alert",
    "get_alert",
    "get_rule",
    "insert_firing_alert",
    "list_alerts",
    "list_rules",
    "RulesVersion",
    "rules_version",
    "posts_page",
    "posts_by_ids",
    "rule_posts",
    "rule_view",
    "save_batch",
    "stream_posts",
    "update_alert",
    "update_rule",
]
