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


class Recorder:
    """One writer thread per store; `put` never blocks on the database."""

    def __init__(self, engine: Engine, *, batch: int = 512) -> None:
        self.engine = engine
        self.batch = batch
        self._queue: queue.SimpleQueue[Write | threading.Event | None] = queue.SimpleQueue()
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="k2probe-recorder", daemon=True)
        self._thread.start()

    def put(self, write: Write) -> None:
        self._check()
        self._queue.put(write)

    def flush(self) -> None:
        """Return once everything put so far is committed (or raise what stopped it)."""
        if self._thread.is_alive():
            done = threading.Event()
            self._queue.put(done)
            done.wait()
        self._check()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._check()

    def _check(self) -> None:
        if self._failure is not None:
            raise ConfigError(f"the store stopped accepting records: {self._failure}",
                              fix="check free disk space and K2PROBE_DB_URL / K2PROBE_HOME, then resume the run")

    def _run(self) -> None:
        stop = False
        while not stop:
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
            if writes and self._failure is None:
                self._commit(writes)
            for event in events:
                event.set()

    def _commit(self, writes: list[Write]) -> None:
        try:
            with Session(self.engine) as session, session.begin():
                for write in writes:
                    write(session)
        except (SQLAlchemyError, OSError, ValueError, TypeError) as exc:
            self._failure = str(exc).splitlines()[0][:300]
