"""Runs carry a lease: the process that owns the run (host:pid:start-time) and when it last renewed it, so a second
`eval --resume` of a run still being worked on is refused instead of sending and judging its samples twice.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(200)))
        batch.add_column(sa.Column("lease_at", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_at")
        batch.drop_column("owner")
