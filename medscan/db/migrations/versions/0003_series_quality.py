"""Series quality: the triage badges of a series (noise, ghosting, slices, field of view, orientation).

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Alembic migration 0003: the ``series_quality`` table, one row of screening badges per series."""
    op.create_table(
        "series_quality",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_ref", sa.Integer(), nullable=False),
        sa.Column("worst", sa.String(length=8), nullable=False),
        sa.Column("badges", sa.JSON(), nullable=False),
        sa.Column("rules_version", sa.String(length=16), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["series_ref"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("series_ref"),
    )


def downgrade() -> None:
    """Alembic migration 0003 undone: drop ``series_quality``."""
    op.drop_table("series_quality")
