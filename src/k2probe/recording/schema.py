"""The store's tables (SQLAlchemy ORM). Changes go through an Alembic migration in `migrations/versions/`.

run → sample (task, route, epoch; unique in its run) → attempt → call (attempt_id, step). A call's messages are stored
by reference, so a conversation that grows by a few messages per step costs its final size, not the sum of its prefixes:
each message once in `messages` (under the sha256 of its canonical JSON), each prefix once in `threads` (a node = its
parent prefix + one message), and the call keeps only the hash of its last node."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from k2probe.core.results import Outcome


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    command: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    tool_version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32), default="running")
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    owner: Mapped[str | None] = mapped_column(String(200))  # the lease: host:pid:start-time of the process running it
    lease_at: Mapped[float | None] = mapped_column(Float)  # when its owner last renewed the lease


class SampleRow(Base):
    """One unit of an evaluation: a task on a route at an epoch, and its single result."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("run_id", "task_id", "route", "epoch", name="uq_samples_unit"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    suite: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str] = mapped_column(String(128))
    route: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16), default=Outcome.PENDING.value)  # an Outcome
    reason: Mapped[str | None] = mapped_column(Text)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    completion: Mapped[str | None] = mapped_column(Text)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class MessageRow(Base):
    """A chat message stored once, however many requests carry it."""

    __tablename__ = "messages"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    size: Mapped[int] = mapped_column(Integer)


class ThreadRow(Base):
    """One node of a conversation: the messages of `parent`, then `message`. Shared by every request with that prefix."""

    __tablename__ = "threads"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(64))
    depth: Mapped[int] = mapped_column(Integer)


class CallRow(Base):
    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    sample_id: Mapped[str | None] = mapped_column(String(36), index=True)
    attempt_id: Mapped[str | None] = mapped_column(String(36), index=True)
    step: Mapped[int | None] = mapped_column(Integer)
    fallback_from: Mapped[str | None] = mapped_column(String(128))
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(128))
    stream: Mapped[bool]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    purpose: Mapped[str | None] = mapped_column(String(128))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)  # without its messages when `thread` is set
    thread: Mapped[str | None] = mapped_column(String(64))  # the last node of the request's messages
    status: Mapped[int | None]
    error_type: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    retry_reason: Mapped[str | None] = mapped_column(Text)
    queue_ms: Mapped[float] = mapped_column(Float, default=0.0)
    prep_ms: Mapped[float] = mapped_column(Float, default=0.0)
    pool_ms: Mapped[float] = mapped_column(Float, default=0.0)
    connect_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    ttfc_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    itl_ms: Mapped[list[float]] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    price_source: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    usage_location: Mapped[str | None] = mapped_column(String(64))
    reasoning_field: Mapped[str | None] = mapped_column(String(64))
    response_shape: Mapped[list[str]] = mapped_column(JSON)
    media: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Float)


class KnownGoodRow(Base):
    __tablename__ = "known_good"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    route: Mapped[str] = mapped_column(String(128), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    saved_at: Mapped[float] = mapped_column(Float)


class AttemptRow(Base):
    """One task attempted by the agent loop: its outcome, verification and totals."""

    __tablename__ = "attempts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    sample_id: Mapped[str | None] = mapped_column(String(36), index=True)
    task_id: Mapped[str | None] = mapped_column(String(128))
    suite: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    statement: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="running")  # running | passed | failed | error | …
    end_reason: Mapped[str | None] = mapped_column(String(32))
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    diff: Mapped[str | None] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[dict[str, int] | None] = mapped_column(JSON)
    reasoning_preserved: Mapped[list[bool | None] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    trajectory_path: Mapped[str | None] = mapped_column(Text)
    isolation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)


class StepRow(Base):
    """One step of the loop, stored as soon as it happened."""

    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[str] = mapped_column(ForeignKey("attempts.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    reasoning_preserved: Mapped[bool | None]
    failures: Mapped[list[str]] = mapped_column(JSON)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReviewRow(Base):
    """A human verdict on a run (or one attempt of it): accepted, repair time, rollback, handoff."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    attempt_id: Mapped[str | None] = mapped_column(ForeignKey("attempts.id"))
    sample_id: Mapped[str | None] = mapped_column(String(36))
    accepted: Mapped[bool]
    repair_minutes: Mapped[float | None] = mapped_column(Float)
    rollback: Mapped[bool] = mapped_column(default=False)
    handoff: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class FindingRow(Base):
    """A proxy finding: one way a request the team's client sent breaks (or risks) the contract."""

    __tablename__ = "findings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    sample_id: Mapped[str | None] = mapped_column(String(36))  # the session (a sample of the proxy run)
    request: Mapped[int] = mapped_column(Integer)  # the request's number in the run (its call's `step`)
    kind: Mapped[str] = mapped_column(String(64))
    pointer: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    fix: Mapped[str] = mapped_column(Text)
    would_400: Mapped[bool] = mapped_column(Boolean)
    evidence: Mapped[str] = mapped_column(Text)
    repaired: Mapped[bool] = mapped_column(Boolean)
