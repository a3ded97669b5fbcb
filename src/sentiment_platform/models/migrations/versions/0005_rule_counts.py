"""Per-rule, per-minute counts of analysed posts (issue 14, phase 2).

- `rule_counts`: (rule_id, minute, sentiment, emotion) → count, the minute being the post's
  analysis time truncated to the minute (UTC). Rule 0 is the built-in rule (every post).
  The primary key is what the monitor reads by (one rule, a range of minutes).

No backfill: rules apply to posts analysed after the upgrade (the built-in alert has no
verdict until `ALERT_MIN_POSTS` posts are counted in its window).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_counts",
        sa.Column("rule_id", sa.BigInteger(), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("sentiment", sa.String(16), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", "minute", "sentiment", "emotion", name="pk_rule_counts"),
    )


def downgrade() -> None:
    op.drop_table("rule_counts")
