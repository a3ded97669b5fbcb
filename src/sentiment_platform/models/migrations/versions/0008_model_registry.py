"""The model registry, its activations, and which model each count comes from (issue 32).

- `analysis_models`: every model the platform can serve, one row per task (the embedded
  model serves sentiment and emotion: two rows, added by the platform at start, not here,
  since its name is the shipped artifact's). Imported models' files live in `MODELS_DIR`.
- `model_activations`: (task, language) → the model that serves it; language `*` for every
  language no row names. No row: the embedded model, as before the registry.
- `model_rollups`: analysed posts per minute / hour / day (of `created_at`, UTC) × source ×
  model, so a metrics answer names the models behind its counts in O(buckets). Backfilled
  here from the posts' copy of their analysis: posts retention already deleted are not
  counted (their labels are still in `post_rollups`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from sentiment_platform.models.database import GRAIN_UNITS, UTCDateTime, bucket_floor_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_models",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=True),
        sa.Column("imported_at", UTCDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", "task", name="pk_analysis_models"),
    )
    op.create_table(
        "model_activations",
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task", "language", name="pk_model_activations"),
    )
    op.create_table(
        "model_rollups",
        sa.Column("grain", sa.String(1), nullable=False),
        sa.Column("bucket_start", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain", "bucket_start", "source", "model", name="pk_model_rollups"
        ),
    )
    dialect = op.get_bind().dialect.name
    for code, grain in GRAIN_UNITS.items():
        start = bucket_floor_sql(dialect, grain, "created_at")
        op.execute(
            sa.text(
                "INSERT INTO model_rollups (grain, bucket_start, source, model, count) "
                f"SELECT :grain, {start}, source, model, count(*) FROM social_media_posts "
                f"WHERE model IS NOT NULL GROUP BY {start}, source, model"
            ).bindparams(grain=code)
        )


def downgrade() -> None:
    op.drop_table("model_rollups")
    op.drop_table("model_activations")
    op.drop_table("analysis_models")
