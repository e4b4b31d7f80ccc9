"""The store: runs, samples, attempts and their calls, known-good records, in SQLite under K2PROBE_HOME (WAL) or
PostgreSQL by URL. Its schema is Alembic's (recording/migrations); calls are written by the recorder's thread."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Row, Table, create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from k2probe import __version__
from k2probe.core.config import home
from k2probe.core.errors import ConfigError
from k2probe.core.liveness import alive, remove_leftovers, token
from k2probe.core.records import CallRecord
from k2probe.core.redact import Redactor
from k2probe.core.results import (
    Attempt,
    AttemptResult,
    Outcome,
    Review,
    Run,
    RunStatus,
    Sample,
    SampleResult,
    Usage,
    Verdict,
)
from k2probe.recording import migrate
from k2probe.recording.recorder import Recorder, StoreFailed
from k2probe.recording.schema import (
    AttemptRow,
    Base,
    CallRow,
    FindingRow,
    KnownGoodRow,
    MessageRow,
    ReviewRow,
    RunRow,
    SampleRow,
    StepRow,
    ThreadRow,
)


def _as_dict(row: Base) -> dict[str, Any]:
    """A row as a plain dict of its columns."""
    return {column.name: getattr(row, column.name) for column in row.__table__.columns}


def _run(row: RunRow) -> Run:
    """A run row as the typed Run."""
    return Run(id=row.id, command=row.command, route=row.route, config=dict(row.config or {}),
               tool_version=row.tool_version, started_at=row.started_at, finished_at=row.finished_at,
               status=row.status, summary=row.summary, owner=row.owner, lease_at=row.lease_at)


def _sample(row: SampleRow | Row[Any], answered_by: list[str], completion: bool = True) -> Sample:
    """A sample row as the typed Sample; its verdict read from the `verification` column (None while pending), so
    rows written before a verdict field existed still read. `completion=False`: the answer was not read (None)."""
    outcome = Outcome(row.outcome)
    verdict = None if outcome is Outcome.PENDING else Verdict.from_row(row.verification, outcome, row.reason)
    usage = Usage(calls=row.calls or 0, retries=row.retries or 0, prompt_tokens=row.prompt_tokens or 0,
                  completion_tokens=row.completion_tokens or 0, reasoning_tokens=row.reasoning_tokens or 0,
                  cached_tokens=row.cached_tokens or 0, cost_usd=row.cost_usd, latency_ms=row.latency_ms)
    return Sample(id=row.id, run_id=row.run_id, suite=row.suite, task_id=row.task_id, route=row.route,
                  epoch=row.epoch, outcome=outcome, reason=row.reason, verdict=verdict,
                  completion=row.completion if completion else None,
                  usage=usage, started_at=row.started_at, finished_at=row.finished_at, answered_by=answered_by)


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


def message_hash(message: Any) -> str:
    """The address of a message: sha256 of its canonical JSON."""
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _table(row: type[Base]) -> Table:
    """A mapped class's Core table (for statements that skip the ORM's unit of work)."""
    table = row.__table__
    assert isinstance(table, Table)
    return table


# Core inserts for what is written per call: compiled once, no unit of work (the recorder's thread shares the GIL)
_CALLS_INSERT = insert(_table(CallRow))
_SAMPLES_INSERT = insert(_table(SampleRow))
_FINDINGS_INSERT = insert(_table(FindingRow))


@functools.cache
def _insert_new_statement(dialect: str, table: Table, key: str) -> Any:
    """INSERT … ON CONFLICT (key) DO NOTHING for `table` (Core, one statement per table: compiled once)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=[key])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])


def _insert_new(session: Session, table: type[Base], key: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose key is not stored yet; another process storing the same row at the same moment is no error.
    A Core executemany of one cached statement: no ORM unit of work, no compiling per call."""
    session.execute(_insert_new_statement(session.get_bind().dialect.name, _table(table), key), rows)


def _read_thread(session: Session, tip: str) -> list[Any]:
    """The messages of a conversation, from its last node back to the first (one recursive query)."""
    nodes = ThreadRow.__table__
    chain = select(nodes.c.parent, nodes.c.message, nodes.c.depth).where(nodes.c.hash == tip).cte("chain", recursive=True)
    chain = chain.union_all(select(nodes.c.parent, nodes.c.message, nodes.c.depth)
                            .join(chain, nodes.c.hash == chain.c.parent))
    rows = session.execute(select(MessageRow.body).join(chain, MessageRow.hash == chain.c.message)
                           .order_by(chain.c.depth)).scalars().all()
    return list(rows)


LEASE_RENEW_S = 10.0  # how often the owner of a run says it is still working on it
LEASE_STALE_S = 60.0  # a lease from another host not renewed for this long is taken over (its process is gone)


def _lease_held(owner: str, lease_at: float | None) -> bool:
    """Is the run still worked on by `owner`? On this host: its process is alive (pid and start time); on another
    host (a shared PostgreSQL store), which we cannot look into: it renewed the lease recently."""
    if owner.partition(":")[0] == socket.gethostname():
        return alive(owner)
    return lease_at is not None and time.time() - lease_at < LEASE_STALE_S


def _who(owner: str, lease_at: float | None) -> str:
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    where = "this host" if host == socket.gethostname() else f"host {host}"
    renewed = f", lease renewed {time.time() - lease_at:.0f} s ago" if lease_at is not None else ""
    return f"pid {pid} on {where}{renewed}"


class Store:
    """Runs and samples are written at once (their ids are referenced); calls and steps through the recorder's queue.
    Every read flushes the queue first, so a reader in the same process sees what was recorded."""

    @property
    def in_memory(self) -> bool:
        """A SQLite store in this process's memory (no other process can open it)."""
        return (self.url.startswith("sqlite") and ":memory:" in self.url) or self.url in ("sqlite://", "sqlite:///")

    def __init__(self, url: str | None = None, redactor: Redactor | None = None) -> None:
        self.url = url or database_url()
        self.redactor = redactor or Redactor()
        self._known: set[str] = set()  # message hashes this process knows are stored
        try:
            if self.in_memory:
                from sqlalchemy.pool import StaticPool  # one shared connection: the recorder's thread sees the tables

                self.engine = create_engine(self.url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                self.engine = create_engine(self.url)
            if self.engine.dialect.name == "sqlite":
                _sqlite_pragmas(self.engine)
            with self.engine.begin() as connection:
                where = self.engine.url  # named without user, password or query (a token may be there)
                migrate.ensure(connection, str(where.database) if where.get_backend_name() == "sqlite"
                               else f"{where.get_backend_name()}://{where.host or ''}/{where.database or ''}")
            self.mark_interrupted()
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            safe = self.redactor.text(str(exc).splitlines()[0])
            raise ConfigError(f"cannot open the store: {safe}",
                              fix="check K2PROBE_DB_URL / K2PROBE_HOME and its free disk space") from exc
        event.listen(self.engine, "handle_error", self._failed)  # from here on, a failing store is one line, exit 2
        self.recorder = Recorder(self.engine)
        remove_leftovers()

    def _failed(self, context: Any) -> None:
        """The database refused a statement or a commit (a full disk, a read-only file, a server gone): the run
        cannot go on, and this is the one line that says so — never a traceback, nor SQL with its parameters."""
        original = context.original_exception
        first = (str(original).splitlines() or [type(original).__name__])[0]
        raise StoreFailed(self.redactor.text(first)[:300]) from None

    def abandon_run(self, run_id: str, reason: str) -> bool:
        """Mark a run `error` past a failed recorder (best effort: False when the store cannot take even that; the
        next process to open the store then marks it `interrupted`, its owner being gone)."""
        try:
            with Session(self.engine) as session, session.begin():
                row = session.get(RunRow, run_id)
                if row is not None:
                    row.status, row.finished_at = RunStatus.ERROR.value, time.time()
                    row.summary = {**(row.summary or {}), "error": reason[:300]}
        except Exception:  # the store is failing: that is why this was called
            return False
        return True

    def mark_interrupted(self) -> int:
        """Runs (and their attempts) left `running` by a process that died are `interrupted`, never running forever."""
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(select(RunRow).where(RunRow.status == RunStatus.RUNNING.value)).all()
            dead = [row for row in rows if isinstance(row.config, dict) and row.config.get("owner")
                    and not alive(str(row.config["owner"]))]
            for row in dead:
                row.status, row.finished_at = RunStatus.INTERRUPTED.value, row.finished_at or time.time()
                for attempt in session.scalars(select(AttemptRow).where(AttemptRow.run_id == row.id,
                                                                        AttemptRow.status == RunStatus.RUNNING.value)).all():
                    attempt.status = attempt.end_reason = RunStatus.INTERRUPTED.value
                    attempt.finished_at = time.time()
            return len(dead)

    # runs -------------------------------------------------------------------------------------------------------
    def start_run(self, command: str, route: str | None, config: dict[str, Any]) -> str:
        run_id = str(uuid.uuid4())
        with Session(self.engine) as session, session.begin():
            config = {**self.redactor.value(config), "owner": token()}
            session.add(RunRow(id=run_id, command=command, route=route, config=config,
                               tool_version=__version__, started_at=time.time(), status=RunStatus.RUNNING.value))
        return run_id

    # the run's lease: one process at a time works on a run --------------------------------------------------
    def claim_run(self, run_id: str) -> None:
        """Make this process the run's one owner. Refused (ConfigError, exit 2) while another process holds it: one
        alive on this host, or one on another host that renewed its lease in the last LEASE_STALE_S. Taken with a
        compare-and-set on `owner`, so of two processes claiming at once exactly one wins (SQLite and PostgreSQL)."""
        self.flush()
        me = token()
        for _ in range(3):
            with Session(self.engine) as session:
                row = session.get(RunRow, run_id)
                if row is None:
                    raise ConfigError(f"no run {run_id}", fix="copy an id from `k2probe runs`")
                seen, lease_at, config = row.owner, row.lease_at, dict(row.config or {})
                running = row.status == RunStatus.RUNNING.value
                holder = seen or (str(config.get("owner")) if running and config.get("owner") else None)
            if holder and holder != me and _lease_held(holder, lease_at):
                raise ConfigError(f"run {run_id[:8]} is being run by another k2probe ({_who(holder, lease_at)}): "
                                  "two would send and judge its samples twice",
                                  fix="wait for it to end or stop it; a run whose process died can be resumed")
            same = RunRow.owner.is_(None) if seen is None else RunRow.owner == seen
            with self.engine.begin() as connection:
                taken = connection.execute(update(RunRow).where(RunRow.id == run_id, same).values(
                    owner=me, lease_at=time.time(), status=RunStatus.RUNNING.value, finished_at=None,
                    config={**config, "owner": me})).rowcount
            if taken == 1:
                return
        raise ConfigError(f"run {run_id[:8]} is being claimed by another k2probe at this moment",
                          fix="let that one run it; resume again once it has ended")

    def renew_lease(self, run_id: str) -> bool:
        """Say this process still works on the run; False if it no longer owns it."""
        with self.engine.begin() as connection:
            return bool(connection.execute(update(RunRow).where(RunRow.id == run_id, RunRow.owner == token())
                                           .values(lease_at=time.time())).rowcount == 1)

    def release_run(self, run_id: str) -> None:
        """Give the run up (its work is done or stopped): anyone may resume it now."""
        with self.engine.begin() as connection:
            connection.execute(update(RunRow).where(RunRow.id == run_id, RunRow.owner == token())
                               .values(owner=None, lease_at=None))

    @contextlib.contextmanager
    def lease(self, run_id: str) -> Iterator[None]:
        """Hold the run while the block runs: claimed first, renewed every LEASE_RENEW_S by a thread, released after."""
        self.claim_run(run_id)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_RENEW_S):
                with contextlib.suppress(SQLAlchemyError):  # a busy store: the next renewal comes well before staleness
                    if not self.renew_lease(run_id):
                        return

        renewer = threading.Thread(target=renew, name="k2probe-lease", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            with contextlib.suppress(SQLAlchemyError):  # not released: its owner's death frees it all the same
                self.release_run(run_id)

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any] | None = None) -> None:
        self.flush()
        with Session(self.engine) as session, session.begin():
            row = session.get(RunRow, run_id)
            if row is not None:
                row.finished_at, row.status = time.time(), status
                row.summary = self.redactor.value(summary) if summary is not None else None

    def runs(self, limit: int = 20) -> list[Run]:
        """The newest runs first."""
        self.flush()
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRow).order_by(RunRow.started_at.desc()).limit(limit)).all()
            return [_run(r) for r in rows]

    def find_run(self, prefix: str) -> Run:
        """The run whose id is `prefix` or the one run whose id starts with it (as printed by `k2probe runs`); the
        prefix is matched as text, never as a LIKE pattern (`_` and `%` are characters of no run id)."""
        if not re.fullmatch(r"[0-9a-fA-F-]{1,36}", prefix):
            raise ConfigError(f"{prefix[:40]!r} is not a run id", fix="copy an id (or its first characters) from "
                              "`k2probe runs`")
        self.flush()
        with Session(self.engine) as session:
            rows = session.scalars(select(RunRow).where(RunRow.id.startswith(prefix.lower(), autoescape=True))
                                   .limit(2)).all()
            if len(rows) != 1:
                what = "no run" if not rows else "more than one run"
                raise ConfigError(f"{what} with id starting {prefix!r}", fix="copy an id from `k2probe runs`")
            return _run(rows[0])

    # calls ------------------------------------------------------------------------------------------------------
    def add_call(self, run_id: str, record: CallRecord) -> None:
        """Queue a call; its messages go into the shared message and thread tables, the call keeps the last node."""
        data = record.as_dict()
        redactor = self.redactor

        def write(session: Session) -> None:
            clean = redactor.value(compact_media(data))
            request = clean.get("request")
            if isinstance(request, dict) and isinstance(request.get("messages"), list) and request["messages"]:
                clean["thread"] = self._store_thread(session, request["messages"])
                clean["request"] = {k: v for k, v in request.items() if k != "messages"}
            session.execute(_CALLS_INSERT, [{"run_id": run_id, **clean}])

        self.recorder.put(write)

    def _store_thread(self, session: Session, messages: list[Any]) -> str:
        bodies: dict[str, Any] = {}
        nodes: list[dict[str, Any]] = []
        parent: str | None = None
        for depth, message in enumerate(messages):
            ref = message_hash(message)
            node = hashlib.sha256(f"{parent or ''}:{ref}".encode()).hexdigest()
            if node not in self._known:
                bodies.setdefault(ref, message)
                nodes.append({"hash": node, "parent": parent, "message": ref, "depth": depth})
            parent = node
        if nodes:
            _insert_new(session, MessageRow, "hash", [{"hash": ref, "body": body, "size": len(json.dumps(body, default=str))}
                                                      for ref, body in bodies.items()])
            _insert_new(session, ThreadRow, "hash", nodes)
            self._known.update(n["hash"] for n in nodes)
        assert parent is not None
        return parent

    def calls(self, run_id: str, *, attempt_id: str | None = None, sample_id: str | None = None,
              offset: int = 0, limit: int | None = None, with_messages: bool = True) -> list[dict[str, Any]]:
        """A run's calls in order (optionally one attempt's or sample's, a page of them), requests whole again."""
        self.flush()
        query = select(CallRow).where(CallRow.run_id == run_id)
        if attempt_id is not None:
            query = query.where(CallRow.attempt_id == attempt_id)
        if sample_id is not None:
            query = query.where(CallRow.sample_id == sample_id)
        query = query.order_by(CallRow.id).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with Session(self.engine) as session:
            items = [_as_dict(r) for r in session.scalars(query).all()]
            if with_messages:
                threads: dict[str, list[Any]] = {}
                for item in items:
                    tip = item.get("thread")
                    if tip and isinstance(item.get("request"), dict):
                        if tip not in threads:
                            threads[tip] = _read_thread(session, tip)
                        item["request"] = {**item["request"], "messages": threads[tip]}
            return items

    # samples ----------------------------------------------------------------------------------------------------
    def plan_samples(self, run_id: str, suite: str, units: Iterable[tuple[str, str, int]]) -> None:
        """Create the run's samples (task, route, epoch) that do not exist yet, all `pending`."""
        with Session(self.engine) as session, session.begin():
            have = set(session.execute(select(SampleRow.task_id, SampleRow.route, SampleRow.epoch)
                                       .where(SampleRow.run_id == run_id)).all())
            for task_id, route, epoch in units:
                if (task_id, route, epoch) not in have:
                    session.add(SampleRow(id=str(uuid.uuid4()), run_id=run_id, suite=suite, task_id=task_id,
                                          route=route, epoch=epoch, outcome=Outcome.PENDING.value))

    def start_sample(self, run_id: str, suite: str, task_id: str, route: str, sample_id: str | None = None) -> str:
        """One sample created as it begins (a proxy session), its id returned at once (or the one given) and its row
        queued with the calls (nothing references a sample by key), so a server's loop never waits on a commit."""
        sample_id = sample_id or str(uuid.uuid4())
        row = {"id": sample_id, "run_id": run_id, "suite": suite, "task_id": task_id, "route": route, "epoch": 0,
               "outcome": Outcome.PENDING.value, "started_at": time.time()}

        def write(session: Session) -> None:
            session.execute(_SAMPLES_INSERT, [row])

        self.recorder.put(write)
        return sample_id

    def add_findings(self, run_id: str, sample_id: str | None, request: int, findings: list[dict[str, Any]]) -> None:
        """Queue a request's findings (kind, pointer, message, fix, would_400, evidence, repaired)."""
        rows = [{**self.redactor.value(f), "run_id": run_id, "sample_id": sample_id, "request": request}
                for f in findings]

        def write(session: Session) -> None:
            if rows:
                session.execute(_FINDINGS_INSERT, rows)

        self.recorder.put(write)

    def findings(self, run_id: str, sample_id: str | None = None) -> list[dict[str, Any]]:
        """A run's findings (or one session's) in the order they were found."""
        self.flush()
        with Session(self.engine) as session:
            query = select(FindingRow).where(FindingRow.run_id == run_id)
            if sample_id is not None:
                query = query.where(FindingRow.sample_id == sample_id)
            rows = session.scalars(query.order_by(FindingRow.id))
            return [_as_dict(r) for r in rows.all()]

    def count_calls(self, run_id: str) -> int:
        self.flush()
        with Session(self.engine) as session:
            return int(session.scalar(select(func.count()).where(CallRow.run_id == run_id)) or 0)

    def sample_outcomes(self, run_id: str) -> dict[str, int]:
        """How many of the run's samples ended in each outcome (empty for a run that is not an evaluation)."""
        self.flush()
        with Session(self.engine) as session:
            rows = session.execute(select(SampleRow.outcome, func.count()).where(SampleRow.run_id == run_id)
                                   .group_by(SampleRow.outcome)).all()
            return {str(outcome): int(n) for outcome, n in rows}

    def samples(self, run_id: str, *, completions: bool = True) -> list[Sample]:
        """The run's samples (by task, route, epoch), each with `answered_by`: the routes that answered its calls
        with an error-free answer (its own, or a fallback), in the order they first did. `completions=False` leaves
        the answers unread (None): what metrics need, without a run's every answer in memory."""
        self.flush()
        answered: dict[str, list[str]] = {}
        with Session(self.engine) as session:
            # plain rows (no ORM objects) of the columns wanted: a 10,000-sample run costs its data, not its bookkeeping
            columns = [c for c in SampleRow.__table__.columns if completions or c.name != "completion"]
            rows = session.execute(select(*columns).where(SampleRow.run_id == run_id)
                                   .order_by(SampleRow.task_id, SampleRow.route, SampleRow.epoch)).all()
            first = func.min(CallRow.id)
            for sample_id, route, _ in session.execute(  # one row per sample and answering route, first answer first
                    select(CallRow.sample_id, CallRow.route, first)
                    .where(CallRow.run_id == run_id, CallRow.sample_id.is_not(None), CallRow.error_type.is_(None))
                    .group_by(CallRow.sample_id, CallRow.route).order_by(first)).all():
                routes = answered.setdefault(str(sample_id), [])
                if route not in routes:
                    routes.append(route)
            return [_sample(r, answered.get(r.id, []), completions) for r in rows]

    def finish_sample(self, sample_id: str, result: SampleResult) -> None:
        """Record a sample's one result (queued like a call: resume re-does a sample whose result was lost; a sample
        that already has a result keeps it)."""
        verdict, usage = result.verdict, result.usage
        reason = self.redactor.value(verdict.reason)
        verification = self.redactor.value(verdict.as_row())
        completion = self.redactor.value(result.completion)

        def write(session: Session) -> None:
            row = session.get(SampleRow, sample_id)
            if row is None or row.outcome != Outcome.PENDING.value:
                return
            row.outcome, row.reason, row.verification = verdict.outcome.value, reason, verification
            row.completion = completion
            row.calls, row.retries = usage.calls, usage.retries
            row.prompt_tokens, row.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            row.reasoning_tokens, row.cached_tokens = usage.reasoning_tokens, usage.cached_tokens
            row.cost_usd, row.latency_ms = usage.cost_usd, usage.latency_ms
            row.started_at, row.finished_at = result.started_at, result.finished_at

        self.recorder.put(write)

    def save_answer(self, sample_id: str, completion: str, usage: Usage) -> None:
        """Keep a pending sample's answer the moment it arrives, committed before it is verified: a run killed
        meanwhile is resumed by verifying this answer, never by paying for it again."""
        with Session(self.engine) as session, session.begin():
            row = session.get(SampleRow, sample_id)
            if row is None or row.outcome != Outcome.PENDING.value:
                return
            row.completion = self.redactor.value(completion)
            row.calls, row.retries = usage.calls, usage.retries
            row.prompt_tokens, row.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            row.reasoning_tokens, row.cached_tokens = usage.reasoning_tokens, usage.cached_tokens
            row.cost_usd, row.latency_ms = usage.cost_usd, usage.latency_ms

    # agent attempts ---------------------------------------------------------------------------------------------
    def start_attempt(self, run_id: str, *, route: str, model: str, statement: str, task_id: str | None = None,
                      suite: str | None = None, sample_id: str | None = None,
                      isolation: dict[str, Any] | None = None) -> str:
        """Open an agent attempt (`running`) of the run; `sample_id` links it to the evaluation sample it serves."""
        attempt_id = str(uuid.uuid4())
        with Session(self.engine) as session, session.begin():
            session.add(AttemptRow(id=attempt_id, run_id=run_id, started_at=time.time(), route=route, model=model,
                                   statement=self.redactor.text(statement), task_id=task_id, suite=suite,
                                   sample_id=sample_id, isolation=self.redactor.value(isolation)))
        return attempt_id

    def add_step(self, attempt_id: str, index: int, reasoning_preserved: bool | None, failures: list[str],
                 latency_ms: float | None, record: dict[str, Any]) -> None:
        clean = self.redactor.value(compact_media(record))
        self.recorder.put(lambda session: session.add(
            StepRow(attempt_id=attempt_id, index=index, reasoning_preserved=reasoning_preserved,
                    failures=failures, latency_ms=latency_ms, record=clean)))

    def finish_attempt(self, attempt_id: str, result: AttemptResult) -> None:
        """Record how an agent attempt ended (its steps were recorded as they happened)."""
        self.flush()
        clean = AttemptResult.model_validate(self.redactor.value(result.model_dump(mode="json")))
        with Session(self.engine) as session, session.begin():
            row = session.get(AttemptRow, attempt_id)
            if row is not None:
                row.status, row.end_reason, row.verification = clean.status.value, clean.end_reason, clean.verification
                row.diff, row.steps, row.failures = clean.diff, clean.steps, clean.failures
                row.reasoning_preserved, row.cost_usd = clean.reasoning_preserved, clean.cost_usd
                row.prompt_tokens, row.completion_tokens = clean.prompt_tokens, clean.completion_tokens
                row.reasoning_tokens, row.trajectory_path = clean.reasoning_tokens, clean.trajectory_path
                row.finished_at = time.time()

    def attempts(self, run_id: str) -> list[Attempt]:
        """The run's agent attempts."""
        self.flush()
        with Session(self.engine) as session:
            rows = session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id)).all()
            return [Attempt.model_validate(_as_dict(r)) for r in rows]

    # known-good records and reviews -----------------------------------------------------------------------------
    def save_known_good(self, run_id: str, route: str, record: dict[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(KnownGoodRow(route=route, run_id=run_id, record=self.redactor.value(compact_media(record)),
                                     saved_at=time.time()))

    def known_good(self, route: str) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            row = session.scalars(select(KnownGoodRow).where(KnownGoodRow.route == route)
                                  .order_by(KnownGoodRow.id.desc()).limit(1)).first()
            return dict(row.record) if row else None

    def add_review(self, run_id: str, *, accepted: bool, attempt_id: str | None = None, sample_id: str | None = None,
                   repair_minutes: float | None = None, rollback: bool = False, handoff: bool = False,
                   note: str | None = None) -> None:
        """A person's verdict on a run, or on one attempt or sample of it (the latest one of a sample decides)."""
        with Session(self.engine) as session, session.begin():
            session.add(ReviewRow(run_id=run_id, created_at=time.time(), accepted=accepted, attempt_id=attempt_id,
                                  sample_id=sample_id, repair_minutes=repair_minutes, rollback=rollback,
                                  handoff=handoff, note=self.redactor.value(note)))

    def reviews(self, run_id: str) -> list[Review]:
        """The run's reviews, oldest first (the latest one decides)."""
        with Session(self.engine) as session:
            rows = session.scalars(select(ReviewRow).where(ReviewRow.run_id == run_id).order_by(ReviewRow.id)).all()
            return [Review.model_validate(_as_dict(r)) for r in rows]

    def flush(self) -> None:
        self.recorder.flush()

    def dispose(self) -> None:
        self.recorder.close()
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
