"""People's labels on posts, and the review draws that make some of them a random sample
(issue 30).

- The label is kept on the post row (`label_sentiment`, `label_emotion`, `labelled_at`,
  null until labelled), as its analysis is (0006): a page and an export read that row alone.
  A partial index on the labelled posts' `created_at` lets quality read every label of a
  range without walking the posts that have none (labels are few, posts are many).
- `review_draws`: every post the review queue handed out, by which strategy (`random` or
  `uncertain`), under which filter (`source`, `since`, `until`: null for none), when, and
  when it was skipped. A label counts as a random label only through a `random` draw of its
  post whose filter covers the range it is read for (services/trust/quality.py).

Adding nullable columns rewrites nothing; the partial index reads the posts once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import BigIntId, UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

POSTS = "social_media_posts"
LABELLED = sa.text("label_sentiment IS NOT NULL")
SKIPPED = sa.text("skipped_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table(POSTS) as batch:
        batch.add_column(sa.Column("label_sentiment", sa.String(16), nullable=True))
        batch.add_column(sa.Column("label_emotion", sa.String(16), nullable=True))
        batch.add_column(sa.Column("labelled_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_posts_labelled_created_at",
        POSTS,
        ["created_at"],
        postgresql_where=LABELLED,
        sqlite_where=LABELLED,
    )
    op.create_table(
        "review_draws",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column(
            "post_ref",
            BigIntId,
            sa.ForeignKey(f"{POSTS}.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("until", UTCDateTime(), nullable=True),
        sa.Column("drawn_at", UTCDateTime(), nullable=False),
        sa.Column("skipped_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_review_draws_post_ref", "review_draws", ["post_ref"])
    op.create_index(
        "ix_review_draws_skipped",
        "review_draws",
        ["post_ref"],
        postgresql_where=SKIPPED,
        sqlite_where=SKIPPED,
    )


def downgrade() -> None:
    op.drop_table("review_draws")
    op.drop_index("ix_posts_labelled_created_at", table_name=POSTS)
    with op.batch_alter_table(POSTS) as batch:
        for name in ("label_sentiment", "label_emotion", "labelled_at"):
            batch.drop_column(name)
