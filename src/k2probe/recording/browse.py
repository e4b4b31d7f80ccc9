"""What the viewer lists, one page at a time: filters, sorting and paging are done in SQL, so a run of 10,000 samples
costs one page of rows, never all of them."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, case, func, literal_column, or_, select, tuple_
from sqlalchemy.orm import Session, defer

from k2probe.core.errors import ConfigError
from k2probe.core.results import Outcome, Run, Sample
from k2probe.recording.schema import CallRow, ReviewRow, RunRow, SampleRow
from k2probe.recording.store import Store, _run, _sample

T = TypeVar("T")

PAGE_SIZES = (25, 50, 100, 200)
RUN_SORTS = {"started": RunRow.started_at, "command": RunRow.command, "status": RunRow.status,
             "route": RunRow.route}
SAMPLE_SORTS = {"task": SampleRow.task_id, "route": SampleRow.route, "epoch": SampleRow.epoch,
                "outcome": SampleRow.outcome, "latency": SampleRow.latency_ms, "cost": SampleRow.cost_usd,
                "tokens": SampleRow.completion_tokens}


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: its items, how many match in all, and where the page starts."""

    items: list[T]
    total: int
    offset: int
    limit: int

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset > 0 else None

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None


@dataclass(frozen=True)
class RunListing:
    """A run as the runs page lists it: the run, its samples by outcome, its calls' cost."""

    run: Run
    passed: int
    failed: int
    error: int
    pending: int
    calls: int
    cost_usd: float | None  # None: no call had a price
    unpriced_calls: int

    @property
    def samples(self) -> int:
        return self.passed + self.failed + self.error + self.pending

    @property
    def duration_s(self) -> float | None:
        return None if self.run.finished_at is None else self.run.finished_at - self.run.started_at


def _contains(column: Any, text: str) -> ColumnElement[bool]:
    """Case-insensitive substring match, the text taken literally (no LIKE wildcards)."""
    return func.lower(column).contains(text.lower(), autoescape=True)


def _sorted(query: Select[Any], columns: dict[str, Any], sort: str, descending: bool, tiebreak: Any) -> Select[Any]:
    if sort not in columns:
        raise ConfigError(f"cannot sort by {sort!r}", fix=f"one of: {', '.join(columns)}")
    column = columns[sort]
    return query.order_by(column.desc() if descending else column.asc(), tiebreak)


def list_runs(store: Store, *, command: str | None = None, status: str | None = None, text: str | None = None,
              sort: str = "started", descending: bool = True, offset: int = 0, limit: int = 50) -> Page[RunListing]:
    """The runs matching the filters, a page of them, each with its outcome counts and cost (aggregated for the page's
    runs only)."""
    store.flush()
    where: list[ColumnElement[bool]] = []
    if command:
        where.append(RunRow.command == command)
    if status:
        where.append(RunRow.status == status)
    if text:
        where.append(or_(RunRow.id.startswith(text.lower(), autoescape=True), _contains(RunRow.route, text),
                         _contains(RunRow.command, text)))
    with Session(store.engine) as session:
        total = int(session.scalar(select(func.count()).select_from(RunRow).where(*where)) or 0)
        query = _sorted(select(RunRow).where(*where), RUN_SORTS, sort, descending, RunRow.id)
        rows = session.scalars(query.offset(offset).limit(limit)).all()
        ids = [r.id for r in rows]
        outcomes: dict[str, dict[str, int]] = {}
        for run_id, outcome, n in session.execute(
                select(SampleRow.run_id, SampleRow.outcome, func.count()).where(SampleRow.run_id.in_(ids))
                .group_by(SampleRow.run_id, SampleRow.outcome)).all():
            outcomes.setdefault(run_id, {})[str(outcome)] = int(n)
        costs = {run_id: (int(calls), cost, int(unpriced)) for run_id, calls, cost, unpriced in session.execute(
            select(CallRow.run_id, func.count(), func.sum(CallRow.cost_usd),
                   func.sum(case((CallRow.cost_usd.is_(None), 1), else_=0)))
            .where(CallRow.run_id.in_(ids)).group_by(CallRow.run_id)).all()}
    items = []
    for row in rows:
        counts = outcomes.get(row.id, {})
        calls, cost, unpriced = costs.get(row.id, (0, None, 0))
        items.append(RunListing(run=_run(row), passed=counts.get(Outcome.PASSED.value, 0),
                                failed=counts.get(Outcome.FAILED.value, 0), error=counts.get(Outcome.ERROR.value, 0),
                                pending=counts.get(Outcome.PENDING.value, 0), calls=calls,
                                cost_usd=None if cost is None else float(cost), unpriced_calls=unpriced))
    return Page(items, total, offset, limit)


def _sample_filters(run_id: str, outcome: str | None, task: str | None, route: str | None,
                    text: str | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [SampleRow.run_id == run_id]
    if outcome:
        where.append(SampleRow.outcome == outcome)
    if task:
        where.append(_contains(SampleRow.task_id, task))
    if route:
        where.append(SampleRow.route == route)
    if text:  # answers can be megabytes each: searched by the words of their verdict, not read whole per query
        where.append(or_(_contains(SampleRow.task_id, text), _contains(SampleRow.reason, text)))
    return where


def _answered_by(session: Session, run_id: str, sample_ids: list[str]) -> dict[str, list[str]]:
    answered: dict[str, list[str]] = {}
    for sample_id, route in session.execute(
            select(CallRow.sample_id, CallRow.route)
            .where(CallRow.run_id == run_id, CallRow.sample_id.in_(sample_ids), CallRow.error_type.is_(None))
            .order_by(CallRow.id)).all():
        routes = answered.setdefault(str(sample_id), [])
        if route not in routes:
            routes.append(route)
    return answered


def list_samples(store: Store, run_id: str, *, outcome: str | None = None, task: str | None = None,
                 route: str | None = None, text: str | None = None, sort: str = "task", descending: bool = False,
                 offset: int = 0, limit: int = 50) -> Page[Sample]:
    """A run's samples matching the filters (outcome, task id, route, text in the task, reason or answer), a page."""
    store.flush()
    where = _sample_filters(run_id, outcome, task, route, text)
    with Session(store.engine) as session:
        total = int(session.scalar(select(func.count()).select_from(SampleRow).where(*where)) or 0)
        query = _sorted(select(SampleRow).options(defer(SampleRow.completion, raiseload=True)).where(*where),
                        SAMPLE_SORTS, sort, descending, SampleRow.id)
        rows = session.scalars(query.offset(offset).limit(limit)).all()
        answered = _answered_by(session, run_id, [r.id for r in rows])
        return Page([_sample(r, answered.get(r.id, []), completion=False) for r in rows], total, offset, limit)


def sample_routes(store: Store, run_id: str) -> list[str]:
    """The routes a run's samples are on (for the route filter)."""
    with Session(store.engine) as session:
        return [str(r) for r in session.scalars(select(SampleRow.route).where(SampleRow.run_id == run_id)
                                                .distinct().order_by(SampleRow.route)).all()]


def get_sample(store: Store, run_id: str, sample_id: str,
               limit: int = 20_000) -> tuple[Sample, int, str | None, str | None]:
    """One sample of a run with at most `limit` characters of its answer, the answer's size in bytes, and the ids of
    the samples before and after it (by task, route, epoch). A 100 MB answer costs `limit` characters here."""
    store.flush()
    with Session(store.engine) as session:
        row = session.scalars(select(SampleRow).options(defer(SampleRow.completion, raiseload=True))
                              .where(SampleRow.id == sample_id, SampleRow.run_id == run_id)).one_or_none()
        if row is None:
            raise ConfigError(f"run {run_id[:8]} has no sample {sample_id[:40]!r}", fix="pick one from the run's page")
        head, length = _answer_head(session, sample_id, limit)
        key = tuple_(SampleRow.task_id, SampleRow.route, SampleRow.epoch)
        here = tuple_(row.task_id, row.route, row.epoch)
        before = session.scalar(select(SampleRow.id).where(SampleRow.run_id == run_id, key < here)
                                .order_by(SampleRow.task_id.desc(), SampleRow.route.desc(), SampleRow.epoch.desc())
                                .limit(1))
        after = session.scalar(select(SampleRow.id).where(SampleRow.run_id == run_id, key > here)
                               .order_by(SampleRow.task_id, SampleRow.route, SampleRow.epoch).limit(1))
        answered = _answered_by(session, run_id, [row.id])
        sample = _sample(row, answered.get(row.id, []), completion=False).model_copy(update={"completion": head})
        return sample, int(length or 0), before, after


def _answer_head(session: Session, sample_id: str, limit: int) -> tuple[str | None, int]:
    """The first `limit` characters of a sample's answer and its size in bytes, without reading the rest: SQLite
    through its incremental blob reader (a function such as substr() would load the whole value), PostgreSQL by
    octet_length (read from the TOAST header) and substr."""
    if session.get_bind().dialect.name == "sqlite":
        rowid: int
        absent: bool
        rowid, absent = session.execute(select(literal_column("rowid"), SampleRow.completion.is_(None))
                                        .where(SampleRow.id == sample_id)).one()
        if absent:
            return None, 0
        raw = session.connection().connection.driver_connection
        with raw.blobopen("samples", "completion", rowid, readonly=True) as blob:  # type: ignore[union-attr]
            size = len(blob)
            return blob.read(4 * limit).decode("utf-8", errors="ignore")[:limit], size
    head, size = session.execute(select(func.substr(SampleRow.completion, 1, limit),
                                        func.octet_length(SampleRow.completion)).where(SampleRow.id == sample_id)).one()
    return head, int(size or 0)


def answer_chunks(store: Store, sample_id: str, size: int = 1 << 20) -> Iterator[str]:
    """A sample's whole answer, read `size` characters at a time (never all of it in memory at once)."""
    with Session(store.engine) as session:
        head, total = _answer_head(session, sample_id, 0)
        if head is None or total == 0:
            return
        if session.get_bind().dialect.name == "sqlite":
            rowid = session.scalar(select(literal_column("rowid")).where(SampleRow.id == sample_id))
            raw = session.connection().connection.driver_connection
            with raw.blobopen("samples", "completion", rowid, readonly=True) as blob:  # type: ignore[union-attr]
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                while chunk := blob.read(size):
                    yield decoder.decode(chunk)
                yield decoder.decode(b"", final=True)
            return
        length = int(session.scalar(select(func.length(SampleRow.completion)).where(SampleRow.id == sample_id)) or 0)
        for start in range(1, length + 1, size):
            yield str(session.scalar(select(func.substr(SampleRow.completion, start, size))
                                     .where(SampleRow.id == sample_id)) or "")


def run_state(store: Store, run_id: str) -> tuple[object, ...]:
    """What a run's figures depend on, cheaply read (indexed counts): while it is unchanged, figures computed from the
    run still hold. Its status, its samples' count and finish times, its reviews, its calls."""
    store.flush()
    with Session(store.engine) as session:
        run = session.execute(select(RunRow.status, RunRow.finished_at).where(RunRow.id == run_id)).one_or_none()
        samples = session.execute(select(func.count(), func.sum(SampleRow.finished_at))
                                  .where(SampleRow.run_id == run_id)).one()
        reviews = session.execute(select(func.count(), func.max(ReviewRow.id)).where(ReviewRow.run_id == run_id)).one()
        calls = session.scalar(select(func.count()).select_from(CallRow).where(CallRow.run_id == run_id))
        return (tuple(run) if run else None, tuple(samples), tuple(reviews), calls)
