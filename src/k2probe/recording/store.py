"""The store: runs and their calls, known-good records, in SQLite under K2PROBE_HOME (WAL) or PostgreSQL by URL."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

from sqlalchemy import JSON, ColumnDefault, Float, ForeignKey, Integer, String, Text, create_engine, event, inspect, select
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from k2probe import __version__
from k2probe.core.config import home
from k2probe.core.errors import ConfigError
from k2probe.core.liveness import alive, remove_leftovers, token
from k2probe.core.records import CallRecord
from k2probe.core.redact import Redactor


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


class CallRow(Base):
    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(128))
    stream: Mapped[bool]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    purpose: Mapped[str | None] = mapped_column(String(128))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
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
    task_id: Mapped[str | None] = mapped_column(String(128))
    suite: Mapped[str | None] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    statement: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32), default="running")  # running | passed | failed
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
    accepted: Mapped[bool]
    repair_minutes: Mapped[float | None] = mapped_column(Float)
    rollback: Mapped[bool] = mapped_column(default=False)
    handoff: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


def _as_dict(row: Base) -> dict[str, Any]:
    """A row as a plain dict of its columns."""
    return {column.name: getattr(row, column.name) for column in row.__table__.columns}


def database_url() -> str:
    """K2PROBE_DB_URL, else a SQLite file under K2PROBE_HOME."""
    url = os.environ.get("K2PROBE_DB_URL")
    if url:
        return url
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(root / 'k2probe.db').resolve()}"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


class Store:
    """Writes each record as soon as it exists, so a killed command loses nothing already recorded."""

    def __init__(self, url: str | None = None, redactor: Redactor | None = None) -> None:
        self.url = url or database_url()
        self.redactor = redactor or Redactor()
        try:
            self.engine = create_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                _sqlite_pragmas(self.engine)
            Base.metadata.create_all(self.engine)
            self._add_new_columns()
            self.mark_interrupted()
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            safe = self.redactor.text(str(exc).splitlines()[0])
            raise ConfigError(f"cannot open the store: {safe}", fix="check K2PROBE_DB_URL / K2PROBE_HOME") from exc
        remove_leftovers()

    def _add_new_columns(self) -> None:
        """A store written by an earlier k2probe gets the columns added since (nullable or defaulted, so old rows
        stay valid). A stop-gap until schema changes go through migrations."""
        existing = {c["name"] for c in inspect(self.engine).get_columns(CallRow.__tablename__)}
        missing = [c for c in CallRow.__table__.columns if c.name not in existing]
        with self.engine.begin() as connection:
            for column in missing:
                kind = column.type.compile(dialect=self.engine.dialect)
                default = " DEFAULT 0" if isinstance(column.default, ColumnDefault) else ""
                connection.execute(sql(f'ALTER TABLE {CallRow.__tablename__} ADD COLUMN {column.name} {kind}{default}'))

    def mark_interrupted(self) -> int:
        """Runs (and their attempts) left `running` by a process that died are `interrupted`, never running forever."""
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(select(RunRow).where(RunRow.status == "running")).all()
            dead = [row for row in rows if isinstance(row.config, dict) and row.config.get("owner")
                    and not alive(str(row.config["owner"]))]
            for row in dead:
                row.status, row.finished_at = "interrupted", row.finished_at or time.time()
                for attempt in session.scalars(select(AttemptRow).where(AttemptRow.run_id == row.id,
                                                                        AttemptRow.status == "running")).all():
                    attempt.status, attempt.end_reason = "interrupted", "interrupted"
                    attempt.finished_at = time.time()
            return len(dead)

    def start_run(self, command: str, route: str | None, config: dict[str, Any]) -> str:
        run_id = str(uuid.uuid4())
        with Session(self.engine) as session, session.begin():
            config = {**self.redactor.value(config), "owner": token()}
            session.add(RunRow(id=run_id, command=command, route=route, config=config,
                               tool_version=__version__, started_at=time.time(), status="running"))
        return run_id

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(RunRow, run_id)
            if row is not None:
                row.finished_at, row.status = time.time(), status
                row.summary = self.redactor.value(summary) if summary is not None else None

    def add_call(self, run_id: str, record: CallRecord) -> None:
        data = self.redactor.value(compact_media(record.as_dict()))
        with Session(self.engine) as session, session.begin():
            session.add(CallRow(run_id=run_id, **data))

    def save_known_good(self, run_id: str, route: str, record: dict[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(KnownGoodRow(route=route, run_id=run_id, record=self.redactor.value(compact_media(record)),
                                     saved_at=time.time()))

    def known_good(self, route: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.scalars(select(KnownGoodRow).where(KnownGoodRow.route == route)
                                  .order_by(KnownGoodRow.id.desc()).limit(1)).first()
            return dict(row.record) if row else None

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.started_at.desc()).limit(limit)).all()
            return [_as_dict(r) for r in rows]

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(CallRow).where(CallRow.run_id == run_id).order_by(CallRow.id)).all()
            return [_as_dict(r) for r in rows]

    def start_attempt(self, run_id: str, **fields: Any) -> str:
        attempt_id = str(uuid.uuid4())
        with Session(self.engine) as session, session.begin():
            session.add(AttemptRow(id=attempt_id, run_id=run_id, started_at=time.time(),
                                   **self.redactor.value(fields)))
        return attempt_id

    def add_step(self, attempt_id: str, index: int, reasoning_preserved: bool | None, failures: list[str],
                 latency_ms: float | None, record: dict[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(StepRow(attempt_id=attempt_id, index=index, reasoning_preserved=reasoning_preserved,
                                failures=failures, latency_ms=latency_ms,
                                record=self.redactor.value(compact_media(record))))

    def finish_attempt(self, attempt_id: str, **fields: Any) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(AttemptRow, attempt_id)
            if row is not None:
                for name, value in self.redactor.value(fields).items():
                    setattr(row, name, value)
                row.finished_at = time.time()

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id)).all()
            return [_as_dict(r) for r in rows]

    def find_run(self, prefix: str) -> dict[str, Any]:
        """The run whose id starts with `prefix` (as printed by `k2probe runs`)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRow).where(RunRow.id.startswith(prefix)).limit(2)).all()
            if len(rows) != 1:
                what = "no run" if not rows else "more than one run"
                raise ConfigError(f"{what} with id starting {prefix!r}", fix="copy an id from `k2probe runs`")
            return _as_dict(rows[0])

    def add_review(self, run_id: str, **fields: Any) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(ReviewRow(run_id=run_id, created_at=time.time(), **self.redactor.value(fields)))

    def reviews(self, run_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            rows = session.scalars(select(ReviewRow).where(ReviewRow.run_id == run_id).order_by(ReviewRow.id)).all()
            return [_as_dict(r) for r in rows]

    def dispose(self) -> None:
        self.engine.dispose()


def compact_media(value: Any) -> Any:
    """A JSON-like value with base64 data URLs replaced by a short description (what gets stored)."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > 256:
        header, _, payload = value.partition(",")
        digest = hashlib.sha256(payload.encode()).hexdigest()[:12]
        return f"{header},<{len(payload) * 3 // 4} bytes, sha256(base64) {digest}>"
    if isinstance(value, dict):
        return {k: compact_media(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact_media(v) for v in value]
    return value
