"""Evaluation samples; messages and conversation prefixes stored once; calls linked by keys to sample, attempt, step.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(128), nullable=False),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("verification", sa.JSON),
        sa.Column("completion", sa.Text),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.UniqueConstraint("run_id", "task_id", "route", "epoch", name="uq_samples_unit"),
    )
    op.create_table(
        "messages",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_table(
        "threads",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("parent", sa.String(64)),
        sa.Column("message", sa.String(64), nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("sample_id", sa.String(36)))
        batch.add_column(sa.Column("attempt_id", sa.String(36)))
        batch.add_column(sa.Column("step", sa.Integer))
        batch.add_column(sa.Column("thread", sa.String(64)))
        batch.create_index("ix_calls_sample_id", ["sample_id"])
        batch.create_index("ix_calls_attempt_id", ["attempt_id"])
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("sample_id", sa.String(36)))
        batch.create_index("ix_attempts_sample_id", ["sample_id"])
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("sample_id", sa.String(36)))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("sample_id")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_index("ix_attempts_sample_id")
        batch.drop_column("sample_id")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_attempt_id")
        batch.drop_index("ix_calls_sample_id")
        for column in ("thread", "step", "attempt_id", "sample_id"):
            batch.drop_column(column)
    op.drop_table("threads")
    op.drop_table("messages")
    op.drop_table("samples")
