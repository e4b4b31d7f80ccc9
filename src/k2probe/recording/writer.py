"""A store written from a process of its own, for a server whose latency is what it measures (the proxy): each write
is pickled on the server's thread — a snapshot, a few microseconds — and a child process does the rest (redaction,
message hashing, SQL), so none of it holds the server's GIL. The child knows the secrets the parent knows (passed
through the pipe that starts it, never a file), so what it writes is redacted as the parent's store would."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import pickle
import signal
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from k2probe.core.records import CallRecord
from k2probe.core.redact import known_secrets, remember
from k2probe.recording.recorder import StoreFailed

FEED_S = 0.02  # how often the writes left so far go to the child


def _serve(url: str, secrets: list[str], writes: Connection, status: Connection) -> None:
    """The child: apply each write to a Store of its own until the parent closes the pipe (or is gone), then commit
    what it has; a failure is said on `status`, once. Ctrl-C and SIGTERM are the parent's to act on (they reach the
    whole process group): the child ends when the parent closes the pipe, its writes done."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for secret in secrets:
        remember(secret)
    from k2probe.recording.store import Store

    store = Store(url)
    try:
        while True:
            try:
                batch: list[bytes] = pickle.loads(writes.recv_bytes())
            except EOFError:  # the parent closed the pipe, or died: what came is written
                break
            for item in batch:
                method, args = pickle.loads(item)
                getattr(store, method)(*args)
        store.flush()
    except Exception as exc:  # one line for the parent: the run cannot be recorded on
        status.send(str(getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}")[:300])
    finally:
        store.dispose()


class StoreWriter:
    """The writes of one store (`url`), done by a child process: `start_sample`, `add_call`, `add_findings`."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process's threads and locks is inherited
        theirs, self._writes = context.Pipe(duplex=False)
        self._status, their_status = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(url, known_secrets(), theirs, their_status),
                                        name="k2probe-writer", daemon=True)
        self._process.start()
        theirs.close()
        their_status.close()
        self._pending: deque[bytes] = deque()  # pickled writes not yet handed to the child (append, popleft: atomic)
        self._closing = threading.Event()
        self._failure: str | None = None
        self._feeder = threading.Thread(target=self._feed, name="k2probe-writer-feeder", daemon=True)
        self._feeder.start()
        # a writer nobody closed is closed at exit, before multiprocessing's own exit hook (registered earlier, so
        # run later) would wait on a child that waits for the end of its pipe
        atexit.register(self._close_at_exit)

    def _close_at_exit(self) -> None:
        with contextlib.suppress(StoreFailed):
            self.close(timeout_s=30.0)

    # ---- the writes (the store's own signatures) -----------------------------------------------------------------
    def start_sample(self, run_id: str, suite: str, task_id: str, route: str, sample_id: str) -> None:
        self._put("start_sample", run_id, suite, task_id, route, sample_id)

    def add_call(self, run_id: str, record: CallRecord) -> None:
        self._put("add_call", run_id, record)

    def add_findings(self, run_id: str, sample_id: str | None, request: int, findings: list[dict[str, Any]]) -> None:
        self._put("add_findings", run_id, sample_id, request, findings)

    def _put(self, method: str, *args: Any) -> None:
        """Pickled here (a snapshot of the arguments), left on a list the feeder takes every FEED_S: no thread is
        woken per write — a wake-up per call made the serving thread wait for the GIL on each."""
        if self.failure is not None:
            raise StoreFailed(self.failure)
        self._pending.append(pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL))

    @property
    def failure(self) -> str | None:
        """Why the child stopped writing (None while it writes)."""
        if self._failure is None and self._status.poll():
            try:
                self._failure = str(self._status.recv())
            except EOFError:  # the child has ended: after its last write (code 0), or killed
                self._process.join(5)
                if self._process.exitcode != 0:
                    self._failure = f"the store's writer process ended (code {self._process.exitcode})"
        return self._failure

    def _feed(self) -> None:
        """Every FEED_S, hand what has been left to the child in one pipe message (this thread waits on the pipe,
        never the server's)."""
        while True:
            closing = self._closing.wait(FEED_S)
            batch = [self._pending.popleft() for _ in range(len(self._pending))]
            if batch:
                try:
                    self._writes.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
                except OSError:  # the child is gone: its status says why
                    self._failure = self._failure or "the store's writer process ended"
                    return
            if closing and not self._pending:
                break
        self._writes.close()

    def close(self, timeout_s: float = 120.0) -> None:
        """Every write committed (the child told it is done, and waited for); raises StoreFailed when one was not."""
        atexit.unregister(self._close_at_exit)
        self._closing.set()
        self._feeder.join(timeout_s)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
            self._failure = self._failure or f"the store's writer did not finish within {timeout_s:.0f} s"
        failure = self.failure
        if failure is None and self._process.exitcode not in (0, None):
            failure = f"the store's writer process ended with code {self._process.exitcode}"
        self._status.close()
        if failure is not None:
            raise StoreFailed(failure)
