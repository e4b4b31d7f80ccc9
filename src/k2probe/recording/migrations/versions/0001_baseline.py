"""The store as k2probe 0.1 wrote it: runs, calls, known-good records, agent attempts and steps, reviews.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("route", sa.String(128)),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("tool_version", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("summary", sa.JSON),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(128)),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("error_type", sa.String(64)),
        sa.Column("error_message", sa.Text),
        sa.Column("retry_reason", sa.Text),
        sa.Column("queue_ms", sa.Float, nullable=False),
        sa.Column("prep_ms", sa.Float, nullable=False),
        sa.Column("pool_ms", sa.Float, nullable=False),
        sa.Column("connect_ms", sa.Float, nullable=False),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("ttfc_ms", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("itl_ms", sa.JSON, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("price_source", sa.Text),
        sa.Column("finish_reason", sa.String(32)),
        sa.Column("usage_location", sa.String(64)),
        sa.Column("reasoning_field", sa.String(64)),
        sa.Column("response_shape", sa.JSON, nullable=False),
        sa.Column("media", sa.JSON, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_table(
        "known_good",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(128), nullable=False, index=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("record", sa.JSON, nullable=False),
        sa.Column("saved_at", sa.Float, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("task_id", sa.String(128)),
        sa.Column("suite", sa.String(64)),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("statement", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("end_reason", sa.String(32)),
        sa.Column("verification", sa.JSON),
        sa.Column("diff", sa.Text),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("failures", sa.JSON),
        sa.Column("reasoning_preserved", sa.JSON),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("reasoning_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float),
        sa.Column("trajectory_path", sa.Text),
        sa.Column("isolation", sa.JSON),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
    )
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id"), nullable=False, index=True),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("reasoning_preserved", sa.Boolean),
        sa.Column("failures", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Float),
        sa.Column("record", sa.JSON, nullable=False),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey("runs.id"), nullable=False, index=True),
        sa.Column("attempt_id", sa.String(36), sa.ForeignKey("attempts.id")),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("repair_minutes", sa.Float),
        sa.Column("rollback", sa.Boolean, nullable=False),
        sa.Column("handoff", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("reviews", "steps", "attempts", "known_good", "calls", "runs"):
        op.drop_table(table)
