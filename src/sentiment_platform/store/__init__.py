"""The store: everything the platform reads from and writes to the database, as plain
functions over an `AsyncSession`. The caller owns the transaction (one unit of work).

- `posts`: idempotent batch writes of posts and analyses, and the paged reads.
- `alerts`: the alert pages and the monitor's SQL.
"""

from sentiment_platform.store.alerts import (
    FIRING,
    count_window,
    firing_alert,
    insert_firing_alert,
    list_alerts,
    update_alert,
)
from sentiment_platform.store.posts import PostFilter, list_posts, save_batch

__all__ = [
    "FIRING",
    "PostFilter",
    "count_window",
    "firing_alert",
    "insert_firing_alert",
    "list_alerts",
    "list_posts",
    "save_batch",
    "update_alert",
]
