"""Annotation overlays: an overlay (a finding's explanation map) may belong to an annotation instead of a result.

``overlays.result_ref`` becomes nullable, ``annotation_ref`` (cascade with its annotation) and ``details`` (the
method and who made the map) are added, and a check keeps exactly one owner per overlay. Existing overlays keep
their result.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Alembic migration 0004: an overlay belongs to a result or (new) to an annotation, exactly one of them, and
    carries details.
    """
    with op.batch_alter_table("overlays") as batch_op:
        batch_op.alter_column("result_ref", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("annotation_ref", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.create_foreign_key("fk_overlays_annotation_ref_annotations", "annotations", ["annotation_ref"],
                                    ["id"], ondelete="CASCADE")
        batch_op.create_index("ix_overlays_annotation_ref", ["annotation_ref"], unique=False)
        batch_op.create_check_constraint("ck_overlays_one_owner", "(result_ref IS NULL) <> (annotation_ref IS NULL)")


def downgrade() -> None:
    """Alembic migration 0004 undone: annotation overlays are deleted (they have no result to belong to)."""
    op.execute("DELETE FROM overlays WHERE result_ref IS NULL")  # annotation overlays have nowhere to go
    with op.batch_alter_table("overlays") as batch_op:
        batch_op.drop_constraint("ck_overlays_one_owner", type_="check")
        batch_op.drop_index("ix_overlays_annotation_ref")
        batch_op.drop_constraint("fk_overlays_annotation_ref_annotations", type_="foreignkey")
        batch_op.drop_column("details")
        batch_op.drop_column("annotation_ref")
        batch_op.alter_column("result_ref", existing_type=sa.Integer(), nullable=False)
