"""Writes leave the request path: records go onto a queue and one thread commits them in batches.

A clean stop (`close`, or `flush` before any read) commits everything; after `kill -9` at most the batch being
written is lost, and an evaluation's resume re-does the samples it belonged to."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from k2probe.core.errors import ConfigError

Write = Callable[[Session], None]
FIX = "check free disk space and K2PROBE_HOME / K2PROBE_DB_URL, then `k2probe eval --resume RUN`"


class StoreFailed(ConfigError):
    """The database refused a write (a full disk, a read-only file, a server gone): the run cannot go on (exit 2)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the store failed: {reason}", fix=FIX)
        self.reason = reason


class Recorder:
    """One writer thread per store; `put` never blocks on the database."""

    def __init__(self, engine: Engine, *, batch: int = 512) -> None:
        self.engine = engine
        self.batch = batch
        self._queue: queue.SimpleQueue[Write | threading.Event | None] = queue.SimpleQueue()
        self._failure: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="k2probe-recorder", daemon=True)
        self._thread.start()

    def put(self, write: Write) -> None:
        self._check()
        self._queue.put(write)

    @property
    def failure(self) -> str | None:
        """Why the store stopped accepting records, once it has (a run stops at once then)."""
        return self._failure

    def flush(self) -> None:
        """Return once everything put so far is committed (or raise what stopped it)."""
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            while not done.wait(0.5) and self._thread.is_alive():
                pass
        self._check()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._closed = True
        self._check()

    def _check(self) -> None:
        if self._failure is not None:
            raise StoreFailed(self._failure)
        if not self._thread.is_alive() and not self._closed:
            raise StoreFailed("its writer thread ended")

    def _run(self) -> None:
        """Never ends before `close`: whatever a write raises stops the writing (and is said at the next put), not
        the thread — a dead thread would leave every later flush waiting."""
        stop = False
        while not stop:
            try:
                stop = self._round()
            except BaseException as exc:  # the thread must outlive any write
                self._failure = self._failure or f"{type(exc).__name__}: {exc}"[:300]

    def _round(self) -> bool:
        """Take what has queued up (at most a batch), commit it, wake whoever flushed; True once asked to stop."""
        stop = False
        item = self._queue.get()
        writes: list[Write] = []
        events: list[threading.Event] = []
        while True:
            if item is None:
                stop = True
            elif isinstance(item, threading.Event):
                events.append(item)
            else:
                writes.append(item)
            if stop or len(writes) >= self.batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            if writes and self._failure is None:
                self._commit(writes)
        finally:
            for event in events:
                event.set()
        return stop

    def _commit(self, writes: list[Write]) -> None:
        try:
            with Session(self.engine) as session, session.begin():
                for write in writes:
                    write(session)
        except Exception as exc:  # any failure to write stops the run, said in one line
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            if isinstance(exc, StoreFailed):
                self._failure = exc.reason
            elif isinstance(exc, SQLAlchemyError | OSError):
                self._failure = first[:300]
            else:
                self._failure = f"{type(exc).__name__}: {first}"[:300]
