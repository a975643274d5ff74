"""Batch tasks: one row per series of a job; jobs lose their item lists; results keep provenance.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Alembic migration 0002: one ``tasks`` row per series of a batch job (replacing the job's item lists), job
    creation time, and the provenance of kept results.
    """
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("done_items")
        batch_op.drop_column("errors")
        batch_op.add_column(sa.Column("created_at", sa.DateTime(), nullable=False,
                                      server_default=sa.text("CURRENT_TIMESTAMP")))
    with op.batch_alter_table("results") as batch_op:
        batch_op.add_column(sa.Column("provenance", sa.JSON(), nullable=False, server_default="[]"))
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_ref", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("series_ref", sa.Integer(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("result_ref", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_ref"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["series_ref"], ["series.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["result_ref"], ["results.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_ref", "position"),
    )
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.create_index("ix_tasks_job_ref", ["job_ref"], unique=False)
        batch_op.create_index("ix_tasks_state", ["state"], unique=False)


def downgrade() -> None:
    """Alembic migration 0002 undone: drop ``tasks`` and the new columns, restore the job's item lists (empty)."""
    op.drop_table("tasks")
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("provenance")
    with op.batch_alter_table("jobs") as batch_op:
        batch_op.drop_column("created_at")
        batch_op.add_column(sa.Column("errors", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("done_items", sa.JSON(), nullable=False, server_default="[]"))
