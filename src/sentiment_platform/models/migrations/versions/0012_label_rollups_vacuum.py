"""Label rollups vacuumed as they change (issue 30): on PostgreSQL, autovacuum visits
`label_rollups` after a few hundred changed cells rather than a fifth of the table.

Every label write moves a post's cells (three grains, the old cells down and the new up),
and the metrics' estimate reads a window's cells in the same statement as the post rollups.
With the default thresholds (50 rows + 20 % of the table) a table of thousands of cells
went hundreds of labels between visits: on the benchmark's store (1M posts, 5,000 random
labels, 7,874 live cells and 1,188 dead ones) the 30-day read of the label cells touched
215 pages in 1.64 ms, and 73 pages in 0.68 ms once vacuumed (docs/performance.md). The
table is small, so a visit costs milliseconds. SQLite has no autovacuum: nothing to do.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

from sentiment_platform.models.label_rollup_sql import TABLE

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SETTINGS = {
    "autovacuum_vacuum_threshold": 200,
    "autovacuum_vacuum_scale_factor": 0.02,
    "autovacuum_analyze_threshold": 200,
    "autovacuum_analyze_scale_factor": 0.02,
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        values = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
        op.execute(f"ALTER TABLE {TABLE} SET ({values})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(SETTINGS)})")
