"""Calls say which route could not answer when they went to its fallback.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("fallback_from", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("fallback_from")
