"""The store: everything the platform reads from and writes to the database, as plain
functions over an `AsyncSession`. The caller owns the transaction (one unit of work).

- `posts`: idempotent batch writes of posts and analyses, and the paged reads.
- `alerts`: the alert pages and the monitor's SQL.
- `rollups`: counts per minute / hour / day × source × labels, kept by `save_batch`.
"""

from sentiment_platform.store.alerts import (
    FIRING,
    count_window,
    firing_alert,
    insert_firing_alert,
    list_alerts,
    update_alert,
)
from sentiment_platform.store.posts import (
    Page,
    PostFilter,
    decode_cursor,
    encode_cursor,
    list_posts,
    save_batch,
    stream_posts,
)

__all__ = [
    "FIRING",
    "Page",
    "PostFilter",
    "decode_cursor",
    "encode_cursor",
    "count_window",
    "firing_alert",
    "insert_firing_alert",
    "list_alerts",
    "list_posts",
    "save_batch",
    "stream_posts",
    "update_alert",
]
