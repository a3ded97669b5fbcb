"""Alert rules, the rule of each alert, and the stored webhook deliveries (issue 14).

- `alert_rules`: the users' rules. The built-in rule (the seed's ALERT_* settings) has no
  row; it is id 0.
- `alerts.rule_id` / `alerts.rule_name`: nullable, no foreign key (a deleted rule's alerts
  stay). Existing rows are the built-in rule's: backfilled to 0 / `built-in`.
- `webhook_deliveries`: one row per notification, sent at least once and in order per rule.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import BigIntId, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PENDING = sa.text("NOT done")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("emotion", sa.String(16), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("min_posts", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )

    op.add_column("alerts", sa.Column("rule_id", BigIntId, nullable=True))
    op.add_column("alerts", sa.Column("rule_name", sa.String(100), nullable=True))
    alerts = sa.table(
        "alerts", sa.column("rule_id", BigIntId), sa.column("rule_name", sa.String(100))
    )
    op.execute(
        alerts.update().where(alerts.c.rule_id.is_(None)).values(rule_id=0, rule_name="built-in")
    )
    op.create_index("ix_alerts_rule_created_at", "alerts", ["rule_id", "created_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigIntId, primary_key=True, autoincrement=True),
        sa.Column("alert_id", BigIntId, nullable=False),
        sa.Column("rule_id", BigIntId, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_alert", "webhook_deliveries", ["alert_id", "id"])
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["rule_id", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_alert", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_alerts_rule_created_at", table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("rule_name")
        batch.drop_column("rule_id")
    op.drop_table("alert_rules")
