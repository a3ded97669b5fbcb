"""At most one firing alert per type: a partial unique index on alerts(alert_type).

Older duplicates (two monitors that both fired before this index) are closed first, keeping
the newest firing row per type open. Posts are counted into the alert window by
`sentiment_analysis.analyzed_at`, whose index `ix_analysis_analyzed_at` 0001 already made.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.domain import utcnow
from sentiment_platform.models.database import BigIntId, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FIRING = sa.text("state = 'firing'")


def upgrade() -> None:
    alerts = sa.table(
        "alerts",
        sa.column("id", BigIntId),
        sa.column("alert_type", sa.String(64)),
        sa.column("state", sa.String(16)),
        sa.column("resolved_at", UTCDateTime()),
    )
    newest_firing = (
        sa.select(sa.func.max(alerts.c.id))
        .where(alerts.c.state == "firing")
        .group_by(alerts.c.alert_type)
    )
    op.execute(
        alerts.update()
        .where(alerts.c.state == "firing", alerts.c.id.not_in(newest_firing))
        .values(state="resolved", resolved_at=utcnow())
    )
    op.create_index(
        "ux_alerts_one_firing",
        "alerts",
        ["alert_type"],
        unique=True,
        postgresql_where=FIRING,
        sqlite_where=FIRING,
    )


def downgrade() -> None:
    op.drop_index("ux_alerts_one_firing", table_name="alerts")
