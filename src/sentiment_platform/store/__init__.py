"""The store: every SQL statement the platform runs, as plain functions over an `AsyncSession`,
one module per table family. The caller owns the transaction (one unit of work). The reads a
request makes alone take a `Reader`: that session, or a bare connection.

- `posts`: idempotent batch writes of posts and analyses, reads by id, retention's deletes.
- `post_pages`: filters, keyset cursors, pages, totals and the export's stream
  (`post_items`: a post row as the API's item).
- `rollups` (+ `counts`, the shared upsert): counts per minute / hour / day × source × labels
  × language × copy; `rollup_reads`: the metrics answer's one read of them, a page's total.
- `alerts`: the alert pages, an alert's row, and the monitor's SQL.
- `alert_rules`: the user's rules and the built-in one.
- `rule_counts`: per-rule, per-minute counts the monitor evaluates rules from.
- `model_rollups`: which model labelled the posts the rollups count.
- `rescore`: the posts a rescore still has to do, and rewriting a batch of them.
- `deliveries`: the webhook delivery queue and its records.
- `models_registry`: the model registry and its activations (which model serves what).
- `bulk`: synthetic history written in bulk (`bench load`).
- `labels`: people's labels on posts, and quality's aggregates of them.
- `review`: the review queue's draws (by integer key), their record, and skips.
- `prepared`: the hot reads, straight on asyncpg on PostgreSQL (`Reader`).
"""

from sentiment_platform.store.alert_rules import (
    RulesVersion,
    builtin_rule,
    count_rules,
    create_rule,
    delete_rule,
    get_rule,
    list_rules,
    rule_view,
    rules_version,
    update_rule,
)
from sentiment_platform.store.alerts import (
    FIRING,
    close_rule_alerts,
    firing_alert,
    firing_alerts,
    get_alert,
    insert_firing_alert,
    list_alerts,
    update_alert,
)
from sentiment_platform.store.deliveries import alert_deliveries, due_deliveries, enqueue_delivery
from sentiment_platform.store.label_rollups import random_labels
from sentiment_platform.store.labels import (
    LabelCell,
    LabelledText,
    LabelScope,
    clear_label,
    label_cells,
    labelled_texts,
    set_label,
    set_labels,
    skipped_count,
)
from sentiment_platform.store.models_registry import (
    ActivationVersion,
    activation_version,
    clear_activation,
    delete_models,
    list_activations,
    list_models,
    model_rows,
    put_model,
    rename_activations,
    set_activation,
)
from sentiment_platform.store.post_items import PostItem
from sentiment_platform.store.post_pages import (
    PostFilter,
    count_matches,
    decode_cursor,
    encode_cursor,
    posts_page,
    stream_posts,
)
from sentiment_platform.store.posts import (
    newest_model,
    posts_by_ids,
    rule_posts,
    save_batch,
    stored_post_ids,
)
from sentiment_platform.store.prepared import Reader, ping
from sentiment_platform.store.rescore import (
    Labelled,
    Scope,
    count_to_rescore,
    posts_to_rescore,
    relabel,
)
from sentiment_platform.store.review import (
    Candidate,
    Skip,
    draw_candidates,
    draw_population,
    items_by_refs,
    post_key_bounds,
    record_draws,
    skip_post,
    uncertain_posts,
)
from sentiment_platform.store.rule_counts import (
    BASELINE,
    Move,
    RuleHit,
    WindowCounts,
    add_rule_counts,
    aggregate_hits,
    floor_minute,
    move_rule_counts,
    prune_rule_counts,
    rule_volume_baseline,
    rule_window,
)

__all__ = [
    "ActivationVersion",
    "activation_version",
    "clear_activation",
    "delete_models",
    "list_activations",
    "list_models",
    "model_rows",
    "put_model",
    "rename_activations",
    "set_activation",
    "Candidate",
    "LabelCell",
    "LabelledText",
    "LabelScope",
    "Skip",
    "clear_label",
    "draw_candidates",
    "draw_population",
    "items_by_refs",
    "label_cells",
    "labelled_texts",
    "newest_model",
    "random_labels",
    "post_key_bounds",
    "record_draws",
    "set_label",
    "set_labels",
    "skip_post",
    "skipped_count",
    "uncertain_posts",
    "BASELINE",
    "FIRING",
    "Labelled",
    "Move",
    "Scope",
    "count_to_rescore",
    "move_rule_counts",
    "posts_to_rescore",
    "relabel",
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
    "ping",
    "posts_page",
    "posts_by_ids",
    "rule_posts",
    "rule_view",
    "save_batch",
    "stored_post_ids",
    "stream_posts",
    "update_alert",
    "update_rule",
]
