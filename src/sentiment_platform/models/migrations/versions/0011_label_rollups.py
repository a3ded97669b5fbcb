"""Random labels rolled up (issue 30): `label_rollups`, kept by triggers, backfilled here.

A metrics answer's estimate needs the random labels of its window by model, label and
prediction. Reading them post by post (0009's partial index, a draw lookup per label) cost
an uncached answer 1.5–2.2× its time; the cells here are read in the same statement as the
post rollups, O(buckets). Key: grain (m / h / d) × the bucket of the post's `created_at` ×
source × language × copy or not (`duplicate`: `duplicate_of` set, as the post rollups
keep it, so `unique=true` leaves labels on copies out) × model × stored prediction × label
× the reach of the post's widest random draw (`all_sources`, `drawn_since`,
`drawn_until`), so a window takes the labels a draw covering it chose
(models/label_rollup_sql.py says which draw, and why triggers).

The triggers live on `social_media_posts` and `review_draws`. On SQLite a later migration
that copies either table (`op.batch_alter_table`) drops its triggers with the old table: it
must create them again (`create_triggers`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import UTCDateTime
from sentiment_platform.models.label_rollup_sql import (
    KEY,
    TABLE,
    create_triggers,
    drop_triggers,
    rebuild_sql,
)

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prediction", sa.String(16), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("all_sources", sa.Boolean(), nullable=False),
        sa.Column("drawn_since", UTCDateTime(), nullable=False),
        sa.Column("drawn_until", UTCDateTime(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="pk_label_rollups"),
    )
    dialect = op.get_bind().dialect.name
    for statement in create_triggers(dialect):
        op.execute(statement)
    op.execute(rebuild_sql(dialect, from_day=False))


def downgrade() -> None:
    for statement in drop_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table(TABLE)
